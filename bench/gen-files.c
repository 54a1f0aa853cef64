/* Writes N files of mixed sizes into DIR (100 subdirectories), about TOTAL bytes in all, half
 * of them compressible text and half pseudo-random bytes, the same files for the same
 * arguments: the bench's "a RUN that writes 1 GiB in 100k files" without forking per file.
 * Usage: gen-files DIR N TOTAL_MIB [SEED]. Built static by bench/compare.sh, so it runs in a
 * busybox image. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t state;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DIR N TOTAL_MIB [SEED]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]);
    uint64_t total = (uint64_t)atol(argv[3]) << 20;
    state = argc > 4 ? strtoull(argv[4], 0, 10) | 1 : 88172645463325252ULL;
    uint64_t mean = n > 0 ? total / n : 0;
    static char buf[1 << 20];
    static const char text[] = "the quick brown fox jumps over the lazy dog 0123456789\n";
    char path[4096];
    if (mkdir(dir, 0755) && errno != EEXIST) { perror(dir); return 1; }
    for (int d = 0; d < 100; d++) {
        snprintf(path, sizeof path, "%s/%02d", dir, d);
        if (mkdir(path, 0755) && errno != EEXIST) { perror(path); return 1; }
    }
    for (long i = 0; i < n; i++) {
        /* Sizes: 7 in 8 small (up to mean/2), 1 in 8 large (up to 12x mean): mean overall. */
        uint64_t r = next();
        uint64_t size = (r & 7) ? (r >> 8) % (mean / 2 + 1) : mean + (r >> 8) % (mean * 11 + 1);
        if (size > sizeof buf) size = sizeof buf;
        int random = (i & 1);
        for (uint64_t k = 0; k < size; k += 8) {
            uint64_t v = random ? next() : 0;
            for (int b = 0; b < 8 && k + b < size; b++)
                buf[k + b] = random ? (char)(v >> (8 * b)) : text[(k + b) % (sizeof text - 1)];
        }
        snprintf(path, sizeof path, "%s/%02ld/f%06ld", dir, i % 100, i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, size, f) != size || fclose(f)) { perror(path); return 1; }
    }
    return 0;
}
