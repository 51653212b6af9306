import Foundation

/// `[portal]`: the regency's page of every village, served by nginx at its own host.
public struct PortalSettings: ConfigSection {
    public static let name = "portal"

    @Setting("enabled", "true: nginx serves the portal, a page of every active village grouped by kecamatan, at portal.host")
    public var enabled = true
    @Setting("host", "the portal's host name, reserved: no village slug or alias may take it; \"\": desa.<regency.domain>")
    public var host = ""
    @Setting("title", "the portal's heading; \"\": Portal Desa <regency.domain>")
    public var title = ""
    @Setting("root", "where the portal's page is written (root's, 0755); \"\": state_dir/portal", .path)
    public var root: String? = nil

    public init() {}
    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        if !host.isEmpty {
            let h: String
            do { h = try Names.validateDomain(host) } catch let e as DesaError { throw fail("portal.host: \(e.message)") }
            guard h == host else { throw fail("portal.host must be written in lowercase, without a final dot (got \(Quote.show(host)))") }
        }
        let h = config.portalHost
        if h.count > config.nginx.maxServerNameLength {
            throw fail("portal.host \(h) is longer than nginx.server_names_hash_bucket_size \(config.nginx.serverNamesHashBucketSize) holds (\(config.nginx.maxServerNameLength))")
        }
        if title.count > 200 || title.contains(where: { $0.isNewline || ($0.unicodeScalars.first.map { $0.value < 32 } ?? false) }) {
            throw fail("portal.title must be one line of at most 200 characters")
        }
        if let r = root, r.hasPrefix(config.webRoot + "/") || r == config.webRoot {
            throw fail("portal.root \(r) lies in the web root, where tenants live")
        }
    }
}

extension Config {
    /// `[portal]`, the portal capability's section.
    public var portal: PortalSettings {
        get { section(PortalSettings.self) }
        set { set(newValue) }
    }

    /// The portal's host: `portal.host`, else `desa.` and the regency's domain.
    public var portalHost: String { portal.host.isEmpty ? "desa." + regency.domain : portal.host }
    public var portalTitle: String { portal.title.isEmpty ? "Portal Desa " + regency.domain : portal.title }
    public var portalRoot: String { portal.root ?? stateDir + "/portal" }

    /// The slug no village may take: the portal's host's first label, when the portal lives
    /// under the regency's domain.
    public var portalReservedSlug: String? {
        let suffix = "." + regency.domain
        guard portalHost.hasSuffix(suffix) else { return nil }
        let label = portalHost.dropLast(suffix.count)
        return label.contains(".") ? nil : String(label)
    }
}
