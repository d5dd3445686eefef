//! Command tables, after Plan 9's `Cmdtab`: each control file that takes
//! commands declares them once (name, arguments, usage, handler), and
//! [`run`] is the one parser of them all: it finds the command, checks how
//! many fields it got and answers every usage and unknown-command error
//! the same way (EINVAL, DESIGN.md "The control tree").
//!
//! `/.ctl/config` (a key and a value, keys from the settings table) and
//! `DIR/.ctl/mode` (one mode word) take values rather than commands and
//! parse them themselves.

use super::super::{Error, Fs, Result};
use crate::store::Ino;

/// Runs a command with the fields after its name, on the control file of
/// directory `owner`.
pub(super) type Handler = fn(&Fs, Ino, &[&str]) -> Result<()>;

/// One command of a control file.
pub(super) struct Cmd {
    /// The command word, the first field.
    pub name: &'static str,
    /// Its arguments as the usage shows them (`PEERID [ADDR] [NAME]`);
    /// each `[…]` one optional field.
    pub args: &'static str,
    /// Runs it.
    pub run: Handler,
}

impl Cmd {
    /// Fields after the name: (at least, at most).
    fn arity(&self) -> (usize, usize) {
        let words: Vec<&str> = self.args.split_whitespace().collect();
        let optional = words.iter().filter(|w| w.starts_with('[')).count();
        (words.len() - optional, words.len())
    }

    fn usage(&self) -> String {
        match self.args.is_empty() {
            true => self.name.to_string(),
            false => format!("{} {}", self.name, self.args),
        }
    }
}

/// Every command of `table`, as `usage: a X | b Y`.
fn usage(table: &[Cmd]) -> String {
    let all: Vec<String> = table.iter().map(Cmd::usage).collect();
    format!("usage: {}", all.join(" | "))
}

/// Parses `fields` against `table` and runs the command: EINVAL with the
/// usage of the command (or of the table) when the fields do not fit, or
/// with the list of commands when the first field names none.
pub(super) fn run(table: &[Cmd], fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    let Some((word, args)) = fields.split_first() else {
        return Err(Error::Invalid(usage(table)));
    };
    let Some(cmd) = table.iter().find(|c| c.name == *word) else {
        let names: Vec<&str> = table.iter().map(|c| c.name).collect();
        return Err(Error::Invalid(format!(
            "unknown command {word:?}: expected {}",
            names.join(", ")
        )));
    };
    let (min, max) = cmd.arity();
    if args.len() < min || args.len() > max {
        return Err(Error::Invalid(format!("usage: {}", cmd.usage())));
    }
    (cmd.run)(fs, owner, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &Fs, _: Ino, _: &[&str]) -> Result<()> {
        Ok(())
    }

    #[test]
    fn arity_counts_optional_fields() {
        let cmd = Cmd {
            name: "add",
            args: "PEERID [ADDR] [NAME]",
            run: nothing,
        };
        assert_eq!(cmd.arity(), (1, 3));
        let bare = Cmd {
            name: "evict",
            args: "",
            run: nothing,
        };
        assert_eq!(bare.arity(), (0, 0));
        assert_eq!(
            usage(&[cmd, bare]),
            "usage: add PEERID [ADDR] [NAME] | evict"
        );
    }
}
