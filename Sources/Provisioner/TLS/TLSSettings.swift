import Foundation

/// `[tls]`: HTTPS for every tenant. Certificates come from an ACME CA (Let's Encrypt by
/// default), bundled up to `bundle_size` names each; with `dns = "rfc2136"` one wildcard
/// for the regency domain comes through the regency's own DNS server instead.
public struct TLSSettings: ConfigSection {
    public static let name = "tls"

    public enum DNSMethod: String, ConfigEnum { case none, rfc2136 }

    @Setting("enabled", "true: desactl cert issue, and HTTPS for every tenant with a certificate")
    public var enabled = false
    @Setting("directory", "the CA's directory URL, or \"letsencrypt\" or \"letsencrypt-staging\"")
    public var directory = "letsencrypt"
    @Setting("contact", "the ACME account's e-mail address")
    public var contact = ""
    @Setting("trusted_roots", "PEM files trusted for the CA's HTTPS and served chains besides the system's (a test CA)", .path)
    public var trustedRoots: [String] = []
    @Setting("eab_kid", "External Account Binding key id, for CAs that want one")
    public var eabKid = ""
    @Setting("eab_hmac_key_file", "the External Account Binding key, base64url, in a 0600 file", .path)
    public var eabHMACKeyFile: String? = nil
    @Setting("bundle_size", "names per certificate (Let's Encrypt allows 100)")
    public var bundleSize = 100
    @Setting("certificates_per_domain", "budget of new certificates per registered domain per 7 days (Let's Encrypt: 50)")
    public var certificatesPerDomain = 45
    @Setting("orders_per_account", "budget of new orders per 3 hours (Let's Encrypt: 300)")
    public var ordersPerAccount = 270
    @Setting("profile", "a certificate profile the CA offers (tlsserver, shortlived); \"\": the CA's default")
    public var profile = ""
    @Setting("listen", "where nginx listens for HTTPS (a port or ADDRESS:PORT), and the port HTTP redirects to")
    public var listen = "443"
    @Setting("hsts_max_age", "Strict-Transport-Security max-age in seconds; 0 sends none")
    public var hstsMaxAge = 0
    @Setting("dns", "\"rfc2136\": the regency wildcard by DNS-01 through dynamic DNS updates; \"none\"")
    public var dns = DNSMethod.none
    @Setting("dns_server", "the regency's DNS server, ADDRESS[:PORT], for tls.dns = \"rfc2136\"")
    public var dnsServer = "127.0.0.1:53"
    @Setting("tsig_key_file", "the TSIG key (tsig-keygen -a hmac-sha256 NAME, 0600) granted TXT updates in the zone", .path)
    public var tsigKeyFile: String? = nil

    public init() {}

    public static let presets = [
        "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
        "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    ]

    /// The directory URL, presets resolved.
    public var directoryURL: String { Self.presets[directory] ?? directory }

    /// The port in `listen` (`127.0.0.1:8443` → 8443).
    public var port: Int { Int(listen.split(separator: ":").last ?? "443") ?? 443 }

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        let url = directoryURL
        guard url.hasPrefix("https://"), URL(string: url)?.host != nil, !url.contains(where: { $0.isWhitespace }) else {
            throw fail("tls.directory must be https://... or one of \(Self.presets.keys.sorted().joined(separator: ", ")) (got \(Quote.show(directory)))")
        }
        if !contact.isEmpty {
            let parts = contact.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, (try? Names.validateDomain(String(parts[1]))) != nil,
                  !contact.contains(where: { $0.isWhitespace || $0 == "," || $0 == "<" || $0 == ">" }) else {
                throw fail("tls.contact \(Quote.show(contact)) is not an e-mail address")
            }
        }
        guard (1...100).contains(bundleSize) else { throw fail("tls.bundle_size must be 1 to 100 (got \(bundleSize))") }
        guard certificatesPerDomain >= 1, ordersPerAccount >= 1 else {
            throw fail("tls.certificates_per_domain and tls.orders_per_account must be at least 1")
        }
        guard profile.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw fail("tls.profile \(Quote.show(profile)) must be letters, digits, - or _")
        }
        guard (1...65535).contains(port), listen.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "." || $0 == ":") }) else {
            throw fail("tls.listen must be a port or ADDRESS:PORT (got \(Quote.show(listen)))")
        }
        guard hstsMaxAge >= 0 else { throw fail("tls.hsts_max_age must be 0 (off) or more seconds") }
        if dns == .rfc2136 {
            guard tsigKeyFile != nil else { throw fail("tls.dns = \"rfc2136\" needs tls.tsig_key_file") }
            guard ProbeAddress(dnsServer) != nil || ProbeAddress(dnsServer + ":53") != nil else {
                throw fail("tls.dns_server must be ADDRESS[:PORT] (got \(Quote.show(dnsServer)))")
            }
        }
    }
}

extension Config {
    /// `[tls]`, the certificates capability's section.
    public var tls: TLSSettings {
        get { section(TLSSettings.self) }
        set { set(newValue) }
    }

    /// Certificates and keys, one directory per certificate; the ACME account key.
    public var certDir: String { stateDir + "/certs" }
}
