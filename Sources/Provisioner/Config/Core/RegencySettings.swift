/// `[regency]`: which regency this server hosts and under which domain.
public struct RegencySettings: ConfigSection {
    public static let name = "regency"

    @Setting("code", "PP.RR; imports reject villages of other regencies")
    public var code = "32.04"
    @Setting("domain", "the regency's domain: each village is SLUG.DOMAIN")
    public var domain = "bandungkab.go.id"

    public init() {}

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        try VillageCode.validateRegency(code)
        try Names.validateDomain(domain)
    }
}
