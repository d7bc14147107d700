//! `outrider-scorer supervise`: what a job's command runs under. The supervisor leads
//! the command's process group, and the scorer that started it asks the kernel to send
//! it SIGTERM when the scorer dies; on that signal it kills the whole group, so a
//! killed scorer leaves none of the job's processes behind (a signal set on the
//! command itself would spare the command's own children).

use std::process::{Command, ExitCode};

extern "C" fn kill_group(_: libc::c_int) {
    // SAFETY: kill is async-signal-safe; 0 is this process's group, itself included.
    unsafe {
        libc::kill(0, libc::SIGKILL);
    }
}

/// Runs `command` in this process's group until it exits, as long as `parent` lives.
pub fn run(parent: u32, command: &[String]) -> ExitCode {
    // SAFETY: the handler only calls kill, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, kill_group as *const () as libc::sighandler_t);
    }
    // The scorer may have died before the signal was asked for.
    if std::os::unix::process::parent_id() != parent {
        kill_group(0);
    }
    let Some((program, args)) = command.split_first() else {
        eprintln!("outrider-scorer supervise: no command");
        return ExitCode::from(2);
    };
    match Command::new(program).args(args).status() {
        Ok(status) => ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("outrider-scorer supervise: cannot start `{program}`: {e}");
            ExitCode::from(127)
        }
    }
}
