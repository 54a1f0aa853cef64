//! Docker-style generated container names: `adjective_surname` of a scientist or engineer.

const LEFT: &[&str] = &[
    "admiring",
    "brave",
    "busy",
    "clever",
    "cool",
    "dreamy",
    "eager",
    "elastic",
    "epic",
    "focused",
    "friendly",
    "gallant",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "magical",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const RIGHT: &[&str] = &[
    "allen", "babbage", "bell", "curie", "darwin", "dijkstra", "einstein", "euler", "fermat", "feynman",
    "galileo", "gauss", "hamilton", "hopper", "hypatia", "kepler", "knuth", "lamarr", "lovelace", "maxwell",
    "meitner", "newton", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "volta", "wozniak",
];

pub(crate) fn random() -> String {
    let l = LEFT[rand::random_range(0..LEFT.len())];
    let r = RIGHT[rand::random_range(0..RIGHT.len())];
    // Docker appends a digit after a clash; a random one keeps the retry loop short.
    format!(
        "{l}_{r}{}",
        if rand::random_bool(0.5) { String::new() } else { rand::random_range(0..10).to_string() }
    )
}
