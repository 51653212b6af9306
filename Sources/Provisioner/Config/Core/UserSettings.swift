/// `[users]`: the Linux users desa creates, one per tenant.
public struct UserSettings: ConfigSection {
    public static let name = "users"

    /// user name = prefix + the 10 code digits.
    public var prefix = "desa"
    public var uidMin = 200_000
    public var uidMax = 299_999
    public var webGroup = "www-data"
    public var sysusersFile = "/etc/sysusers.d/desa.conf"
    public var passwdFile = "/etc/passwd"

    public init() {}

    /// UIDs the system hands out itself; a tenant range must stay clear of them all.
    public static let reservedUIDs: [(range: ClosedRange<Int>, owner: String)] = [
        (0...999, "system users"),
        (60001...60513, "systemd's container users"),
        (61184...65519, "systemd's dynamic users"),
        (65534...65535, "nobody and the invalid UID"),
    ]

    enum CodingKeys: String, CodingKey {
        case prefix, uidMin = "uid_min", uidMax = "uid_max", webGroup = "web_group"
        case sysusersFile = "sysusers_file", passwdFile = "passwd_file"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        prefix = try c.value(.prefix, or: d.prefix)
        uidMin = try c.value(.uidMin, or: d.uidMin)
        uidMax = try c.value(.uidMax, or: d.uidMax)
        webGroup = try c.value(.webGroup, or: d.webGroup)
        sysusersFile = try c.value(.sysusersFile, or: d.sysusersFile)
        passwdFile = try c.value(.passwdFile, or: d.passwdFile)
    }

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
        try PathGrammar.check([("users.sysusers_file", sysusersFile), ("users.passwd_file", passwdFile)])
        let groupOK = (1...32).contains(webGroup.count) && webGroup.first!.isLetter
            && webGroup.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        if !groupOK { throw fail("users.web_group \(Quote.show(webGroup)) is not a group name") }
    }
}
