use crate::{BuildDefinition, Error};

/// What the frontend needs to know about a base image.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

/// Answers questions about base images (the solver looks them up in the store).
pub trait ImageResolver {
    /// The config of image `reference`, or an error message if it cannot be found.
    fn resolve(&self, reference: &str) -> Result<BaseConfig, String>;
}

#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// `--build-arg NAME=value` pairs.
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build; the last stage when `None`.
    pub target: Option<String>,
}

pub fn lower(
    file: &str,
    text: &str,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildDefinition, Error> {
    let _ = (file, text, options, resolver);
    todo!()
}
