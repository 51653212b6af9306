import Foundation

/// Well-known ACME directories.
public enum ACMEDirectoryPreset {
    public static let letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"
    public static let letsEncryptStaging = "https://acme-staging-v02.api.letsencrypt.org/directory"
}

/// An External Account Binding (RFC 8555 §7.3.4): the key ID and MAC key the CA handed out.
public struct ExternalAccountBinding: Sendable, Equatable {
    public var kid: String
    /// The MAC key, base64url as CAs hand it out (padding tolerated).
    public var hmacKey: String

    public init(kid: String, hmacKey: String) {
        self.kid = kid; self.hmacKey = hmacKey
    }
}

/// What the account is registered with.
public struct ACMEAccountOptions: Sendable, Equatable {
    /// `mailto:` URLs; a bare address gets `mailto:` put in front.
    public var contact: [String]
    public var eab: ExternalAccountBinding?

    public init(contact: [String] = [], eab: ExternalAccountBinding? = nil) {
        self.contact = contact; self.eab = eab
    }
}

/// Time limits and retries of an `ACMEClient`.
public struct ACMEClientSettings: Sendable {
    /// One HTTP request, connect to last byte.
    public var requestTimeout: TimeInterval = 30
    public var connectTimeout: TimeInterval = 10
    /// How long an order may take from answering the challenges to the certificate.
    public var validationDeadline: TimeInterval = 120
    /// How often a request rejected for `badNonce` is sent again with a fresh nonce.
    public var badNonceRetries: Int = 8
    public var userAgent: String = "desa-acme/1"

    public init() {}
}

/// The account as the CA knows it.
public struct ACMEAccount: Sendable, Equatable {
    /// The account URL (the JWS `kid`).
    public var url: String
    public var status: String
    public var contact: [String]
    /// True when this call created the account, false when the key's account existed.
    public var created: Bool
    /// RFC 7638 thumbprint of the account key.
    public var thumbprint: String
}

/// One certificate to order.
public struct ACMEOrderRequest: Sendable, Equatable {
    /// DNS names; `*.example.org` needs a dns-01 responder.
    public var names: [String]
    /// ARI certificate ID (RFC 9773) of the certificate this one replaces.
    public var replaces: String?
    /// A profile the CA's directory advertises (`meta.profiles`).
    public var profile: String?
    /// An existing P-256 private key (PEM, PKCS#8 or SEC 1) to reuse; nil makes a new one.
    public var keyPEM: String?

    public init(names: [String], replaces: String? = nil, profile: String? = nil, keyPEM: String? = nil) {
        self.names = names; self.replaces = replaces; self.profile = profile; self.keyPEM = keyPEM
    }
}

/// An issued certificate with its key.
public struct IssuedCertificate: Sendable, Equatable {
    /// Leaf first, then the intermediates, as the CA served them.
    public var chainPEM: String
    /// ECDSA P-256, PKCS#8 PEM.
    public var keyPEM: String
    public var notBefore: Date
    public var notAfter: Date
    /// The leaf's DNS names.
    public var names: [String]
    /// Lower-case hex, no leading zeros.
    public var serialHex: String
    /// RFC 9773 certificate ID, for `renewalInfo` and an order's `replaces`; nil only when the
    /// certificate has no authority key identifier (public CAs always include one).
    public var ariCertID: String?
    /// Where the CA serves the chain.
    public var certificateURL: String
}

/// A renewal window the CA suggests (RFC 9773).
public struct RenewalInfo: Sendable, Equatable {
    public var certID: String
    public var windowStart: Date
    public var windowEnd: Date
    public var explanationURL: String?
    /// When to ask again (the response's Retry-After).
    public var retryAfter: Date?

    public init(certID: String, windowStart: Date, windowEnd: Date, explanationURL: String? = nil, retryAfter: Date? = nil) {
        self.certID = certID; self.windowStart = windowStart; self.windowEnd = windowEnd
        self.explanationURL = explanationURL; self.retryAfter = retryAfter
    }

    /// When to renew: a uniformly random moment in the window, or the window's start once
    /// the window has passed (a time in the past means: renew now).
    public func chooseTime(now: Date = Date()) -> Date {
        var rng = SystemRandomNumberGenerator()
        return chooseTime(now: now, using: &rng)
    }

    public func chooseTime<R: RandomNumberGenerator>(now: Date, using rng: inout R) -> Date {
        let start = windowStart.timeIntervalSince1970, end = windowEnd.timeIntervalSince1970
        if end <= now.timeIntervalSince1970 || end <= start { return windowStart }
        return Date(timeIntervalSince1970: Double.random(in: start..<end, using: &rng))
    }
}

/// An RFC 7807 problem document from the CA, shown as "type: detail".
public struct ACMEProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Subproblem: Sendable, Equatable {
        /// "dns:example.org", or "" when the CA named none.
        public var identifier: String
        public var type: String
        public var detail: String
    }

    /// The full type, e.g. `urn:ietf:params:acme:error:rateLimited`.
    public var type: String
    public var detail: String
    /// The HTTP status of the response, when the problem came in one.
    public var status: Int?
    public var subproblems: [Subproblem]
    /// From the Retry-After header (seconds or an HTTP date).
    public var retryAfter: Date?
    /// The request URL that was answered with this problem.
    public var url: String?

    public init(type: String, detail: String, status: Int? = nil, subproblems: [Subproblem] = [],
                retryAfter: Date? = nil, url: String? = nil) {
        self.type = type; self.detail = detail; self.status = status; self.subproblems = subproblems
        self.retryAfter = retryAfter; self.url = url
    }

    static let acmePrefix = "urn:ietf:params:acme:error:"

    /// The type without the `urn:ietf:params:acme:error:` prefix.
    public var shortType: String {
        type.hasPrefix(Self.acmePrefix) ? String(type.dropFirst(Self.acmePrefix.count)) : type
    }

    /// Whether this is the ACME error `name` (e.g. "rateLimited").
    public func isACME(_ name: String) -> Bool { type == Self.acmePrefix + name }

    /// A problem of the moment, not of the request: worth the same request later.
    public var isTransient: Bool { isACME("badNonce") || isACME("rateLimited") || isACME("serverInternal") }

    public var description: String {
        var s = "\(shortType): \(detail)"
        for p in subproblems {
            let t = p.type.hasPrefix(Self.acmePrefix) ? String(p.type.dropFirst(Self.acmePrefix.count)) : p.type
            s += "; \(p.identifier.isEmpty ? "" : p.identifier + ": ")\(t): \(p.detail)"
        }
        if let retryAfter { s += " (retry after \(ISO8601DateFormatter().string(from: retryAfter)))" }
        return s
    }
}

/// Some names of an order could not be validated; nothing was finalized. Retry the order
/// without the failed names, or fix them first.
public struct ACMEAuthorizationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Name (as requested, `*.` kept) → the CA's reason.
    public var failed: [String: ACMEProblem]
    public var succeeded: [String]

    public var description: String {
        "the CA could not validate " + failed.keys.sorted().map { "\($0) (\(failed[$0]!))" }.joined(separator: ", ")
    }
}

/// Serves http-01 key authorizations at `http://<name>/.well-known/acme-challenge/<token>`.
public protocol HTTP01Responder: Sendable {
    func present(token: String, keyAuthorization: String) throws
    func cleanUp(token: String)
}

/// Publishes a TXT record `txtValue` at `_acme-challenge.<domain>` (domain without `*.`).
/// `present` returns once the record is served by the authoritative servers.
public protocol DNS01Responder: Sendable {
    func present(domain: String, txtValue: String) async throws
    func cleanUp(domain: String, txtValue: String) async
}
