//! Logging: syslog (ident `smarter-cni`, facility daemon) when a socket exists, stderr
//! otherwise. Never stdout: that belongs to the CNI result.

use std::sync::{Mutex, OnceLock};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

type Syslog = Logger<LoggerBackend, Formatter3164>;

static SYSLOG: OnceLock<Mutex<Option<Syslog>>> = OnceLock::new();

fn syslog() -> &'static Mutex<Option<Syslog>> {
    SYSLOG.get_or_init(|| {
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: "smarter-cni".into(),
            pid: std::process::id(),
        };
        Mutex::new(syslog::unix(formatter).ok())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

pub fn write(level: Level, message: &str) {
    let mut guard = syslog().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let sent = match guard.as_mut() {
        Some(logger) => match level {
            Level::Error => logger.err(message),
            Level::Warning => logger.warning(message),
            Level::Info => logger.info(message),
        }
        .is_ok(),
        None => false,
    };
    if !sent {
        eprintln!("smarter-cni: {message}");
    }
}

pub fn info(message: &str) {
    write(Level::Info, message);
}

pub fn warn(message: &str) {
    write(Level::Warning, message);
}

pub fn error(message: &str) {
    write(Level::Error, message);
}
