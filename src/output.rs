//! Standard output that a closed pipe ends quietly.
//!
//! `println!` panics when standard output is gone (`brick sim list | head` closes the pipe
//! after ten lines). A reader that closes the pipe has read all it wants: the process ends
//! with status 0 and says nothing. Any other write error (a full disk behind a redirect)
//! ends it with status 2 and the error on standard error.

use std::fmt;
use std::io::{self, Write as _};

/// `println!` through [`write`]: `outln!()` or `outln!("{x}")`.
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// Writes `args` to standard output; see the module doc for what a failure does.
pub(crate) fn write(args: fmt::Arguments<'_>) {
    let result = {
        let mut stdout = io::stdout().lock();
        stdout.write_fmt(args).and_then(|()| stdout.flush())
    };
    if let Err(err) = result {
        if err.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {err}");
        std::process::exit(2);
    }
}
