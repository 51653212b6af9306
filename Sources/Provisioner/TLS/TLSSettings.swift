import Foundation

/// `[tls]`: HTTPS for every tenant. Certificates come from an ACME CA (Let's Encrypt by
/// default), bundled up to `bundle_size` names each; with `dns = "rfc2136"` one wildcard
/// for the regency domain comes through the regency's own DNS server instead.
public struct TLSSettings: ConfigSection {
    public static let name = "tls"

    public enum DNSMethod: String, ConfigEnum { case none, rfc2136 }

    /// Whether desa issues certificates and serves HTTPS.
    public var enabled = false
    /// The CA's directory URL, or a preset: `letsencrypt`, `letsencrypt-staging`.
    public var directory = "letsencrypt"
    /// The account's contact address (`mailto:` is added).
    public var contact = ""
    /// PEM files trusted for the CA's own HTTPS and for checking served chains (a test CA);
    /// empty: the system's roots.
    public var trustedRoots: [String] = []
    /// External Account Binding, for CAs that want it: the key id and a file holding the
    /// base64url HMAC key (0600).
    public var eabKid = ""
    public var eabHMACKeyFile: String? = nil
    /// Names per certificate (Let's Encrypt allows 100).
    public var bundleSize = 100
    /// The budget the ledger keeps to: new certificates per registered domain per 7 days,
    /// and new orders per 3 hours (Let's Encrypt: 50 and 300).
    public var certificatesPerDomain = 45
    public var ordersPerAccount = 270
    /// A certificate profile the CA offers (`tlsserver`, `shortlived`); empty: the CA's default.
    public var profile = ""
    /// Where nginx listens for HTTPS, and the port HTTP redirects to.
    public var listen = "443"
    /// `Strict-Transport-Security` max-age in seconds; 0 sends none.
    public var hstsMaxAge = 0
    /// DNS-01 for the regency domain through RFC 2136 dynamic updates.
    public var dns = DNSMethod.none
    public var dnsServer = "127.0.0.1:53"
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

    enum CodingKeys: String, CodingKey {
        case enabled, directory, contact, trustedRoots = "trusted_roots", eabKid = "eab_kid", eabHMACKeyFile = "eab_hmac_key_file"
        case bundleSize = "bundle_size", certificatesPerDomain = "certificates_per_domain", ordersPerAccount = "orders_per_account"
        case profile, listen, hstsMaxAge = "hsts_max_age", dns, dnsServer = "dns_server", tsigKeyFile = "tsig_key_file"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        enabled = try c.value(.enabled, or: d.enabled)
        directory = try c.value(.directory, or: d.directory)
        contact = try c.value(.contact, or: d.contact)
        trustedRoots = try c.value(.trustedRoots, or: d.trustedRoots)
        eabKid = try c.value(.eabKid, or: d.eabKid)
        eabHMACKeyFile = try c.optionalPath(.eabHMACKeyFile)
        bundleSize = try c.value(.bundleSize, or: d.bundleSize)
        certificatesPerDomain = try c.value(.certificatesPerDomain, or: d.certificatesPerDomain)
        ordersPerAccount = try c.value(.ordersPerAccount, or: d.ordersPerAccount)
        profile = try c.value(.profile, or: d.profile)
        listen = try c.value(.listen, or: d.listen)
        hstsMaxAge = try c.value(.hstsMaxAge, or: d.hstsMaxAge)
        dns = try c.value(.dns, or: d.dns)
        dnsServer = try c.value(.dnsServer, or: d.dnsServer)
        tsigKeyFile = try c.optionalPath(.tsigKeyFile)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(directory, forKey: .directory)
        try c.encode(contact, forKey: .contact)
        try c.encode(trustedRoots, forKey: .trustedRoots)
        try c.encode(eabKid, forKey: .eabKid)
        try c.encode(eabHMACKeyFile ?? "", forKey: .eabHMACKeyFile)
        try c.encode(bundleSize, forKey: .bundleSize)
        try c.encode(certificatesPerDomain, forKey: .certificatesPerDomain)
        try c.encode(ordersPerAccount, forKey: .ordersPerAccount)
        try c.encode(profile, forKey: .profile)
        try c.encode(listen, forKey: .listen)
        try c.encode(hstsMaxAge, forKey: .hstsMaxAge)
        try c.encode(dns, forKey: .dns)
        try c.encode(dnsServer, forKey: .dnsServer)
        try c.encode(tsigKeyFile ?? "", forKey: .tsigKeyFile)
    }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        var paths = trustedRoots.enumerated().map { ("tls.trusted_roots[\($0.offset)]", $0.element) }
        if let f = eabHMACKeyFile { paths.append(("tls.eab_hmac_key_file", f)) }
        if let f = tsigKeyFile { paths.append(("tls.tsig_key_file", f)) }
        try PathGrammar.check(paths)
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
