//! `MOCK_AGENT_ARGV_LOG`: a record of how the daemon invoked the agent.
//!
//! Tests assert on the exact argv, cwd and pid the daemon used. Several runs
//! may log to one file concurrently, so each record is one JSON line written
//! with a single `write(2)` on an `O_APPEND` descriptor, which the kernel
//! keeps whole.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;

use crate::args::Invocation;
use crate::error::Failure;
use crate::json;

/// The log line (with its newline). `args` excludes the program name.
pub fn render(args: &[String], cwd: Option<&str>, pid: u32, inv: &Invocation) -> String {
    let mut line = String::from("{\"argv\":[");
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        json::push_str(&mut line, arg);
    }
    line.push_str("],\"cwd\":");
    line.push_str(&json::string_or_null(cwd));
    line.push_str(&format!(",\"pid\":{pid},\"flavour\":"));
    json::push_str(&mut line, inv.flavour.name());
    line.push_str(",\"prompt\":");
    json::push_str(&mut line, &inv.prompt);
    line.push_str(",\"resume\":");
    line.push_str(&json::string_or_null(inv.resume.as_deref()));
    line.push_str("}\n");
    line
}

/// Appends `line` to the file at `path` in one write.
pub fn append(path: &OsStr, line: &str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(
            1,
            format!(
                "mock-agent: cannot append to MOCK_AGENT_ARGV_LOG {}: {e}",
                path.to_string_lossy()
            ),
        )
    };
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(fail)?;
    let written = file.write(line.as_bytes()).map_err(fail)?;
    if written != line.len() {
        return Err(fail(std::io::Error::other(format!(
            "short write ({written} of {} bytes)",
            line.len()
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Flavour;

    #[test]
    fn renders_one_escaped_line() {
        let inv = Invocation {
            flavour: Flavour::Claude,
            prompt: "say \"hi\"\n".to_owned(),
            resume: Some("sid".to_owned()),
            stdin_json: false,
            permission_prompt_tool: None,
            allowed_tools: Vec::new(),
            skip_git_repo_check: true,
        };
        let args = vec!["-p".to_owned(), "a\\b".to_owned()];
        assert_eq!(
            render(&args, Some("/w"), 42, &inv),
            "{\"argv\":[\"-p\",\"a\\\\b\"],\"cwd\":\"/w\",\"pid\":42,\"flavour\":\"claude\",\"prompt\":\"say \\\"hi\\\"\\n\",\"resume\":\"sid\"}\n"
        );
    }

    #[test]
    fn null_resume_and_codex() {
        let inv = Invocation {
            flavour: Flavour::Codex,
            prompt: "p".to_owned(),
            resume: None,
            stdin_json: false,
            permission_prompt_tool: None,
            allowed_tools: Vec::new(),
            skip_git_repo_check: false,
        };
        let line = render(&[], None, 1, &inv);
        assert_eq!(
            line,
            "{\"argv\":[],\"cwd\":null,\"pid\":1,\"flavour\":\"codex\",\"prompt\":\"p\",\"resume\":null}\n"
        );
    }
}
