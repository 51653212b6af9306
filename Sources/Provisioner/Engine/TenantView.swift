import Foundation

/// A tenant as `tenant list` and `tenant show` present it. Its JSON form is the
/// documented, stable output of `--json`.
public struct TenantView: Sendable {
    public var tenant: Tenant
    public var aliases: [String]
    public var domain: String
    public var user: String
    public var home: String

    public init(tenant: Tenant, aliases: [String], config: Config) {
        self.tenant = tenant
        self.aliases = aliases
        domain = tenant.primaryDomain(config)
        user = tenant.userName(prefix: config.userPrefix)
        home = tenant.home(config)
    }

    /// RFC 3339 in UTC, by hand: Foundation's formatter costs ~10 µs a date.
    static func rfc3339(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
    }

    public var json: JSON {
        let t = tenant
        return .object([
            ("code", .string(t.code)), ("slug", .string(t.slug)), ("name", .string(t.name)),
            ("kind", .string(t.kind.rawValue)), ("district", .string(t.districtName)),
            ("district_code", .string(t.districtCode)), ("domain", .string(domain)),
            ("aliases", .array(aliases.map { .string($0) })), ("status", .string(t.status.rawValue)),
            ("desired", .string(t.desired.rawValue)), ("reason", .str(t.reason)),
            ("template", .string(t.template)), ("php", .string(t.php)), ("user", .string(user)),
            ("uid", .int(t.uid)), ("home", .string(home)),
            ("created_at", .string(Self.rfc3339(t.createdAt))),
            ("updated_at", .string(Self.rfc3339(t.updatedAt))),
        ])
    }
}
