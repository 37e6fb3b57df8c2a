//! DNS names a pod is known by, and the rules a name must pass before it reaches Docker
//! or a record file.

/// An RFC 1123 label as Kubernetes uses it: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Labels joined by dots, at most 253 bytes (Kubernetes' "DNS subdomain").
pub fn is_dns_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// What Kubernetes accepts as a pod name (`IsDNS1123Subdomain`): at most 253 bytes of
/// `[a-z0-9.-]`, each dot-separated part alphanumeric at both ends, but a part may be
/// longer than 63 bytes, so a valid pod name is not always a valid DNS name.
pub fn is_rfc1123_subdomain(text: &str) -> bool {
    let part_ok = |part: &str| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    !text.is_empty() && text.len() <= 253 && text.split('.').all(part_ok)
}

/// Why `text` is not a DNS name, or `None` when it is one.
pub fn why_not_dns_name(text: &str) -> Option<&'static str> {
    if is_dns_name(text) {
        None
    } else if text.len() > 253 {
        Some("longer than 253 characters")
    } else if text.split('.').any(|label| label.len() > 63) {
        Some("a label is longer than 63 characters")
    } else {
        Some("not of the form [a-z0-9-] labels joined by dots")
    }
}

/// A name that could not be registered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: &'static str,
}

/// The names of one pod, in the order they are registered, without duplicates, plus the
/// candidates that failed validation (for the log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    pub names: Vec<String>,
    pub skipped: Vec<Skipped>,
}

impl PodNames {
    /// `hostname` comes from the sandbox (DNS is case-insensitive, so it is lowercased);
    /// `domain`, when set, adds a fully qualified twin of every name.
    pub fn new(hostname: Option<&str>, pod: Option<&str>, namespace: Option<&str>, domain: Option<&str>) -> PodNames {
        let mut candidates: Vec<String> = Vec::new();
        if let Some(host) = hostname.filter(|h| !h.is_empty()) {
            candidates.push(host.to_ascii_lowercase());
        }
        if let Some(pod) = pod {
            candidates.push(pod.to_string());
            if let Some(ns) = namespace {
                candidates.push(format!("{pod}.{ns}"));
            }
        }
        if let Some(domain) = domain {
            let qualified: Vec<String> = candidates.iter().map(|n| format!("{n}.{domain}")).collect();
            candidates.extend(qualified);
        }
        let mut result = PodNames::default();
        for name in candidates {
            if let Some(reason) = why_not_dns_name(&name) {
                if !result.skipped.iter().any(|s| s.name == name) {
                    result.skipped.push(Skipped { name, reason });
                }
            } else if !result.names.contains(&name) {
                result.names.push(name);
            }
        }
        result
    }

    /// `"<name>" (<reason>), ...` for the one log line that reports skipped names.
    pub fn skipped_text(&self) -> String {
        let parts: Vec<String> = self.skipped.iter().map(|s| format!("{:?} ({})", s.name, s.reason)).collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_in_order_without_duplicates() {
        let names = PodNames::new(Some("web-0"), Some("web-0"), Some("default"), None);
        assert_eq!(names.names, vec!["web-0", "web-0.default"]);
        assert!(names.skipped.is_empty());
    }

    #[test]
    fn domain_twins_and_lowercased_hostname() {
        let names = PodNames::new(Some("Sensor"), Some("sensor-abc"), Some("iot"), Some("gw.local"));
        assert_eq!(
            names.names,
            vec!["sensor", "sensor-abc", "sensor-abc.iot", "sensor.gw.local", "sensor-abc.gw.local", "sensor-abc.iot.gw.local"]
        );
    }

    #[test]
    fn invalid_names_are_skipped_never_passed() {
        let long_pod = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60));
        let names = PodNames::new(Some("bad_host"), Some(&long_pod), Some("default"), None);
        assert_eq!(names.names, vec![long_pod.clone()]);
        let skipped: Vec<&str> = names.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, vec!["bad_host".to_string(), format!("{long_pod}.default")]);
        assert_eq!(names.skipped[1].reason, "longer than 253 characters");
        let hostile = PodNames::new(Some("x\n127.0.0.1 evil"), None, None, None);
        assert!(hostile.names.is_empty());
    }

    #[test]
    fn a_pod_name_with_a_long_part_keeps_its_valid_names() {
        // Kubernetes accepts this pod name; only the hostname the kubelet derives from it
        // (the first 63 characters) can be a DNS name.
        let pod = format!("{}-0", "a".repeat(70));
        assert!(is_rfc1123_subdomain(&pod));
        let names = PodNames::new(Some(&"a".repeat(63)), Some(&pod), Some("default"), None);
        assert_eq!(names.names, vec!["a".repeat(63)]);
        assert_eq!(names.skipped.len(), 2);
        assert!(names.skipped.iter().all(|s| s.reason == "a label is longer than 63 characters"));
        assert!(names.skipped_text().starts_with(&format!("\"{pod}\" (a label")));
    }

    #[test]
    fn kubernetes_pod_name_rule() {
        assert!(is_rfc1123_subdomain("web-0"));
        assert!(is_rfc1123_subdomain("web.v1"));
        assert!(is_rfc1123_subdomain(&"a".repeat(253)));
        assert!(!is_rfc1123_subdomain(&"a".repeat(254)));
        for bad in ["", "Web", "web-", "-web", "a..b", "a b", "a/b", "a\nb", "a_b", ".a", "a."] {
            assert!(!is_rfc1123_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn label_and_name_rules() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("web-0"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label("web-"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_name("a.b-c.d"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("a/b"));
        assert!(!is_dns_name(""));
    }
}
