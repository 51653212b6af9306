/// `[regency]`: which regency this server hosts and under which domain.
public struct RegencySettings: ConfigSection {
    public static let name = "regency"

    /// `PP.RR`; imports reject villages of other regencies.
    public var code = "32.04"
    public var domain = "bandungkab.go.id"

    public init() {}

    enum CodingKeys: String, CodingKey { case code, domain }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        code = try c.value(.code, or: d.code)
        domain = try c.value(.domain, or: d.domain)
    }

    public func validate(in config: Config) throws {
        try VillageCode.validateRegency(code)
        try Names.validateDomain(domain)
    }
}
