/// `[paths]`: where desa keeps its state, the web roots, logs and templates.
public struct PathSettings: ConfigSection {
    public static let name = "paths"

    /// state.sqlite, the lock, the rollback journal.
    public var stateDir = "/var/lib/desa"
    public var webRoot = "/srv/desa"
    /// Defaults to `state_dir/archive` when the file sets state_dir but not this.
    public var archiveDir = "/var/lib/desa/archive"
    /// The shared `/.well-known/acme-challenge/`; defaults to `state_dir/acme`.
    public var acmeRoot = "/var/lib/desa/acme"
    public var logDir = "/var/log/desa"
    public var templates = "/usr/share/desa/templates"
    /// A directory overriding or adding templates; `""` in the file means none.
    public var operatorTemplates: String? = nil

    public init() {}

    enum CodingKeys: String, CodingKey {
        case stateDir = "state_dir", webRoot = "web_root", archiveDir = "archive_dir", acmeRoot = "acme_root"
        case logDir = "log_dir", templates, operatorTemplates = "operator_templates"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        stateDir = try c.value(.stateDir, or: d.stateDir)
        webRoot = try c.value(.webRoot, or: d.webRoot)
        archiveDir = try c.value(.archiveDir, or: stateDir + "/archive")
        acmeRoot = try c.value(.acmeRoot, or: stateDir + "/acme")
        logDir = try c.value(.logDir, or: d.logDir)
        templates = try c.value(.templates, or: d.templates)
        operatorTemplates = try c.optionalPath(.operatorTemplates)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(stateDir, forKey: .stateDir)
        try c.encode(webRoot, forKey: .webRoot)
        try c.encode(archiveDir, forKey: .archiveDir)
        try c.encode(acmeRoot, forKey: .acmeRoot)
        try c.encode(logDir, forKey: .logDir)
        try c.encode(templates, forKey: .templates)
        try c.encode(operatorTemplates ?? "", forKey: .operatorTemplates)
    }

    public func validate(in config: Config) throws {
        var paths: [(String, String)] = [
            ("paths.state_dir", stateDir), ("paths.web_root", webRoot), ("paths.archive_dir", archiveDir),
            ("paths.acme_root", acmeRoot), ("paths.log_dir", logDir), ("paths.templates", templates),
        ]
        if let o = operatorTemplates { paths.append(("paths.operator_templates", o)) }
        try PathGrammar.check(paths)
    }
}
