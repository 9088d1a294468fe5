//! Output for people or machines.

use serde::Serialize;

/// Prints `value` as JSON when asked, else the human lines `human` renders.
pub(crate) fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: encoding the output: {e}"),
        }
    } else {
        let text = human(value);
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
    }
}
