/// `[paths]`: where desa keeps its state, the web roots, logs and templates.
public struct PathSettings: ConfigSection {
    public static let name = "paths"

    @Setting("state_dir", "state.sqlite (0600, WAL), the lock, the rollback journal, certificates", .path)
    public var stateDir = "/var/lib/desa"
    @Setting("web_root", "the tenants' homes", .path)
    public var webRoot = "/srv/desa"
    @Setting("archive_dir", "deleted tenants' homes and database dumps; defaults to state_dir/archive", .path)
    public var archiveDir = "/var/lib/desa/archive"
    @Setting("acme_root", "the shared /.well-known/acme-challenge/; defaults to state_dir/acme", .path)
    public var acmeRoot = "/var/lib/desa/acme"
    @Setting("log_dir", "desa's logs and the tenants' log directories (tenants/SLUG)", .path)
    public var logDir = "/var/log/desa"
    @Setting("templates", "the built-in templates", .path)
    public var templates = "/usr/share/desa/templates"
    @Setting("operator_templates", "a directory overriding or adding templates; \"\": none", .path)
    public var operatorTemplates: String? = nil

    public init() {}

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public mutating func settingsDecoded(present: Set<String>, at path: [CodingKey]) throws {
        if !present.contains("archive_dir") { archiveDir = stateDir + "/archive" }
        if !present.contains("acme_root") { acmeRoot = stateDir + "/acme" }
    }

    public func validate(in config: Config) throws {}
}
