/// `[users]`: the Linux users desa creates, one per tenant.
public struct UserSettings: ConfigSection {
    public static let name = "users"

    @Setting("prefix", "user = prefix + the 10 code digits")
    public var prefix = "desa"
    @Setting("uid_min", "the tenants' UID range, clear of the system's: 0-999, 60001-60513, 61184-65519 (systemd), 65534-65535")
    public var uidMin = 200_000
    @Setting("uid_max", "the range's last UID")
    public var uidMax = 299_999
    @Setting("web_group", "the web server's group: it reads the homes")
    public var webGroup = "www-data"
    @Setting("sysusers_file", "the sysusers.d file declaring every tenant's user", .path)
    public var sysusersFile = "/etc/sysusers.d/desa.conf"
    @Setting("passwd_file", "where users are looked up", .path)
    public var passwdFile = "/etc/passwd"

    public init() {}

    /// UIDs the system hands out itself; a tenant range must stay clear of them all.
    public static let reservedUIDs: [(range: ClosedRange<Int>, owner: String)] = [
        (0...999, "system users"),
        (60001...60513, "systemd's container users"),
        (61184...65519, "systemd's dynamic users"),
        (65534...65535, "nobody and the invalid UID"),
    ]

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        try Names.validateUserPrefix(prefix)
        if prefix.count + 10 > 32 { throw fail("users.prefix is too long for 32-character user names") }
        guard uidMin >= 1000, uidMax > uidMin, uidMax < 4_294_967_294 else {
            throw fail("users.uid_min/uid_max must be a range above 999 (got \(uidMin)-\(uidMax))")
        }
        for (r, owner) in Self.reservedUIDs where r.overlaps(uidMin...uidMax) {
            throw fail("users.uid_min/uid_max \(uidMin)-\(uidMax) overlaps \(r.lowerBound)-\(r.upperBound) (\(owner)); choose a range clear of it, like 200000-299999")
        }
        let groupOK = (1...32).contains(webGroup.count) && webGroup.first!.isLetter
            && webGroup.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        if !groupOK { throw fail("users.web_group \(Quote.show(webGroup)) is not a group name") }
    }
}
