//! `--io-engine`: how a `file:` backend does its I/O.

use std::fmt;
use std::str::FromStr;

/// How the requests of a `file:` backend reach the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// Positioned reads and writes on the worker threads, each blocking
    /// its thread until done.
    #[default]
    Threads,
    /// Submitted to an io_uring; a request in flight holds no thread.
    IoUring,
}

impl FromStr for IoEngine {
    type Err = String;

    fn from_str(text: &str) -> Result<IoEngine, String> {
        match text {
            "threads" => Ok(IoEngine::Threads),
            "io_uring" | "io-uring" => Ok(IoEngine::IoUring),
            _ => Err(format!(
                "unknown I/O engine {text:?} (supported: threads, io_uring)"
            )),
        }
    }
}

impl fmt::Display for IoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoEngine::Threads => "threads",
            IoEngine::IoUring => "io_uring",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_parse_and_print_by_name() {
        for engine in [IoEngine::Threads, IoEngine::IoUring] {
            assert_eq!(engine.to_string().parse(), Ok(engine));
        }
        assert_eq!("io-uring".parse(), Ok(IoEngine::IoUring));
        let err = "aio".parse::<IoEngine>().unwrap_err();
        assert!(err.contains("threads, io_uring"), "{err}");
    }
}
