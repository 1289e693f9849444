//! The frameworks `custos report posture` maps controls to, item by item, and the items no
//! control of Custos addresses (with where they are addressed instead).
//!
//! Ids are the frameworks' own where they have them (`ASI01`, `NHI1`); NIST SP 800-207 numbers
//! its tenets in section 2.1 (`ZT1` to `ZT7` here) and CSA MAESTRO its layers (`L1` to `L7`).
//! Names are short titles; read the publications for the text.

/// One framework and its items.
#[derive(Debug)]
pub struct Framework {
    pub id: &'static str,
    pub name: &'static str,
    pub items: &'static [Item],
}

/// One risk, tenet or layer.
#[derive(Debug)]
pub struct Item {
    pub id: &'static str,
    pub name: &'static str,
}

const fn item(id: &'static str, name: &'static str) -> Item {
    Item { id, name }
}

pub const FRAMEWORKS: [Framework; 4] = [
    Framework {
        id: "owasp-agentic-2026",
        name: "OWASP Top 10 for Agentic Applications (2026)",
        items: &[
            item("ASI01", "Agent Goal Hijack"),
            item("ASI02", "Tool Misuse and Exploitation"),
            item("ASI03", "Identity and Privilege Abuse"),
            item("ASI04", "Agentic Supply Chain Vulnerabilities"),
            item("ASI05", "Unexpected Code Execution"),
            item("ASI06", "Memory and Context Poisoning"),
            item("ASI07", "Insecure Inter-Agent Communication"),
            item("ASI08", "Cascading Failures"),
            item("ASI09", "Human-Agent Trust Exploitation"),
            item("ASI10", "Rogue Agents"),
        ],
    },
    Framework {
        id: "owasp-nhi-2025",
        name: "OWASP Non-Human Identities Top 10 (2025)",
        items: &[
            item("NHI1", "Improper Offboarding"),
            item("NHI2", "Secret Leakage"),
            item("NHI3", "Vulnerable Third-Party NHI"),
            item("NHI4", "Insecure Authentication"),
            item("NHI5", "Overprivileged NHI"),
            item("NHI6", "Insecure Cloud Deployment Configurations"),
            item("NHI7", "Long-Lived Secrets"),
            item("NHI8", "Environment Isolation"),
            item("NHI9", "NHI Reuse"),
            item("NHI10", "Human Use of NHI"),
        ],
    },
    Framework {
        id: "nist-sp-800-207",
        name: "NIST SP 800-207 Zero Trust Architecture: tenets",
        items: &[
            item("ZT1", "All data sources and computing services are resources"),
            item("ZT2", "All communication is secured regardless of network location"),
            item("ZT3", "Access to each resource is granted per session"),
            item("ZT4", "Access is determined by dynamic policy"),
            item("ZT5", "The integrity and security posture of all assets is monitored"),
            item("ZT6", "Authentication and authorization are dynamic and enforced before access"),
            item("ZT7", "State is collected and used to improve the security posture"),
        ],
    },
    Framework {
        id: "csa-maestro",
        name: "CSA MAESTRO: layers",
        items: &[
            item("L1", "Foundation Models"),
            item("L2", "Data Operations"),
            item("L3", "Agent Frameworks"),
            item("L4", "Deployment and Infrastructure"),
            item("L5", "Evaluation and Observability"),
            item("L6", "Security and Compliance"),
            item("L7", "Agent Ecosystem"),
        ],
    },
];

/// Items outside what a gateway on the tool-call path can do, and what addresses them instead.
/// Always listed among the gaps, whatever the configuration.
pub const OUTSIDE: [(&str, &str); 3] = [
    ("NHI6", "cloud IAM and deployment configuration are outside the gateway: review them with your cloud's tools"),
    ("NHI8", "separate deployments (data directory, master key, secrets) per environment; Custos does not enforce it"),
    ("L1", "the model itself is not on the tool-call path: evaluate and pin the models your agents use"),
];
