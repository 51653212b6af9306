import Crypto
import Foundation
import NIOHTTP1
import X509

/// An ACME (RFC 8555) client for one CA directory and one account key.
///
/// One `HTTPClient` inside: call `shutdown()` when done, or use `ACMEClient.with(...)`
/// (a client dropped without it shuts its connections down in the background).
/// Problems the CA reports are thrown as `ACMEProblem`; a CA that cannot be reached or
/// answers something that is not ACME as `DesaError` naming the URL.
public actor ACMEClient {
    public nonisolated let directoryURL: String
    public nonisolated let accountKeyPath: String
    let options: ACMEAccountOptions
    let settings: ACMEClientSettings
    let http: ACMEHTTP

    private var cachedDirectory: ACMEDirectory?
    private var registered: (account: ACMEAccount, key: ACMEAccountKey)?
    private var nonces: [String] = []
    private var isShutDown = false
    /// How many requests were sent again after a `badNonce` (for tests and logs).
    private(set) var badNonceRetries = 0

    /// - Parameters:
    ///   - trustRoots: PEM files with the certificates to trust for the CA's HTTPS; nil
    ///     trusts the system's roots.
    ///   - accountKeyPath: where the account key lives (made on first use, 0600).
    public init(directoryURL: String, trustRoots: [String]? = nil, accountKeyPath: String,
                account options: ACMEAccountOptions = .init(), settings: ACMEClientSettings = .init()) throws {
        guard let url = URL(string: directoryURL), let scheme = url.scheme, ["https", "http"].contains(scheme), url.host != nil else {
            throw DesaError.invalid("the ACME directory URL \(Quote.show(directoryURL)) is not an https:// URL")
        }
        self.directoryURL = directoryURL
        self.accountKeyPath = accountKeyPath
        self.options = options
        self.settings = settings
        self.http = try ACMEHTTP(trustRoots: trustRoots, settings: settings)
    }

    /// Runs `body` with a client and shuts the client down afterwards, whatever happens.
    public static func with<T: Sendable>(directoryURL: String, trustRoots: [String]? = nil, accountKeyPath: String,
                                         account options: ACMEAccountOptions = .init(), settings: ACMEClientSettings = .init(),
                                         _ body: (ACMEClient) async throws -> T) async throws -> T {
        let client = try ACMEClient(directoryURL: directoryURL, trustRoots: trustRoots, accountKeyPath: accountKeyPath,
                                    account: options, settings: settings)
        let result: T
        do {
            result = try await body(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        return result
    }

    /// Closes the HTTP connections. The client is unusable afterwards.
    public func shutdown() async throws {
        guard !isShutDown else { return }
        isShutDown = true
        try await http.shutdown()
    }

    /// A client dropped without `shutdown()` still releases its connections (AsyncHTTPClient
    /// would otherwise stop a debug build).
    deinit {
        if !isShutDown { _ = http.client.shutdown() }
    }

    // MARK: Directory

    func directory() async throws -> ACMEDirectory {
        if let cachedDirectory { return cachedDirectory }
        let r = try await http.send(.GET, directoryURL, accept: "application/json")
        guard r.status == 200 else { throw problem(r) }
        let d = try decode(ACMEDirectory.self, r, what: "a directory")
        cachedDirectory = d
        return d
    }

    /// The certificate profiles the CA offers (name → description); empty when none.
    public func profiles() async throws -> [String: String] {
        try await directory().meta?.profiles ?? [:]
    }

    /// Whether the CA wants an External Account Binding for new accounts.
    public func externalAccountRequired() async throws -> Bool {
        try await directory().meta?.externalAccountRequired ?? false
    }

    // MARK: Account

    /// The account of the key at `accountKeyPath`: looked up when the key exists, registered
    /// (with the contact and EAB of the options, agreeing to the CA's terms) when not.
    public func account() async throws -> ACMEAccount {
        try await accountAndKey().account
    }

    private func accountAndKey() async throws -> (account: ACMEAccount, key: ACMEAccountKey) {
        if let registered { return registered }
        let dir = try await directory()
        let (key, existed) = try ACMEAccountKey.loadOrCreate(path: accountKeyPath)
        if existed {
            do {
                let r = try await post(dir.newAccount, payload: .object([("onlyReturnExisting", .bool(true))]), signer: .jwk, key: key)
                return try remember(r, key: key, created: false)
            } catch let p as ACMEProblem where p.isACME("accountDoesNotExist") {
                // A key made earlier whose registration never completed: register it now.
            }
        }
        var payload: [(String, JSON)] = [("termsOfServiceAgreed", .bool(true))]
        if !options.contact.isEmpty {
            payload.append(("contact", .array(options.contact.map { .string($0.contains(":") ? $0 : "mailto:" + $0) })))
        }
        if let eab = options.eab {
            payload.append(("externalAccountBinding", try key.externalAccountBinding(eab, url: dir.newAccount)))
        }
        let r = try await post(dir.newAccount, payload: .object(payload), signer: .jwk, key: key)
        return try remember(r, key: key, created: r.status == 201)
    }

    private func remember(_ r: ACMEResponse, key: ACMEAccountKey, created: Bool) throws -> (account: ACMEAccount, key: ACMEAccountKey) {
        guard let url = r.location, !url.isEmpty else {
            throw DesaError.system("the ACME server at \(r.url) sent no Location header for the account")
        }
        let resource = try decode(ACMEAccountResource.self, r, what: "an account")
        guard resource.status == "valid" else {
            throw DesaError.system("the ACME account \(url) is \(resource.status), not valid")
        }
        let account = ACMEAccount(url: url, status: resource.status, contact: resource.contact ?? [],
                                  created: created, thumbprint: key.thumbprint)
        registered = (account, key)
        return (account, key)
    }

    // MARK: Orders

    /// The newOrder payload (RFC 8555 §7.4, `replaces` from RFC 9773 §5, `profile`).
    static func newOrderPayload(names: [String], replaces: String?, profile: String?) -> JSON {
        var fields: [(String, JSON)] = [
            ("identifiers", .array(names.map { .object([("type", .string("dns")), ("value", .string($0))]) })),
        ]
        if let replaces { fields.append(("replaces", .string(replaces))) }
        if let profile { fields.append(("profile", .string(profile))) }
        return .object(fields)
    }

    /// Lower-cased, trailing dot dropped, duplicates removed, checked: letters, digits,
    /// hyphens and dots, `*.` only in front.
    static func normalize(_ names: [String]) throws -> [String] {
        var out: [String] = [], seen = Set<String>()
        for raw in names {
            var n = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if n.hasSuffix(".") { n.removeLast() }
            let base = n.hasPrefix("*.") ? String(n.dropFirst(2)) : n
            let labels = base.split(separator: ".", omittingEmptySubsequences: false)
            guard !base.isEmpty, base.utf8.count <= 253, labels.count >= 2,
                  labels.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 && !$0.hasPrefix("-") && !$0.hasSuffix("-")
                                      && $0.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 } })
            else {
                throw DesaError.invalid("\(Quote.show(raw)) is not a DNS name a certificate can be ordered for")
            }
            if seen.insert(n).inserted { out.append(n) }
        }
        guard !out.isEmpty else { throw DesaError.invalid("a certificate order needs at least one name") }
        return out
    }

    /// Orders a certificate for `request.names`: http-01 for plain names, dns-01 for
    /// wildcards. Throws `ACMEAuthorizationFailure` (nothing finalized) when the CA could not
    /// validate some names.
    public func issue(_ request: ACMEOrderRequest, http01: any HTTP01Responder,
                      dns01: (any DNS01Responder)? = nil) async throws -> IssuedCertificate {
        let names = try Self.normalize(request.names)
        if dns01 == nil, let w = names.first(where: { $0.hasPrefix("*.") }) {
            throw DesaError.invalid("\(w) is a wildcard name: it needs a dns-01 responder")
        }
        let certKey: P256.Signing.PrivateKey
        if let pem = request.keyPEM {
            do { certKey = try P256.Signing.PrivateKey(pemRepresentation: pem) } catch {
                throw DesaError.invalid("the key to reuse for \(names[0]) is not a P-256 private key in PEM form")
            }
        } else {
            certKey = P256.Signing.PrivateKey()
        }
        let dir = try await directory()
        if let profile = request.profile {
            let offered = dir.meta?.profiles ?? [:]
            guard offered[profile] != nil else {
                throw DesaError.invalid(offered.isEmpty
                    ? "the CA at \(directoryURL) offers no certificate profiles, so profile \(Quote.show(profile)) cannot be requested"
                    : "the CA at \(directoryURL) has no profile \(Quote.show(profile)) (it offers \(offered.keys.sorted().joined(separator: ", ")))")
            }
        }
        let (account, key) = try await accountAndKey()
        let signer = ACMEAccountKey.Signer.kid(account.url)

        let payload = Self.newOrderPayload(names: names, replaces: request.replaces, profile: request.profile)
        let created = try await post(dir.newOrder, payload: payload, signer: signer, key: key)
        guard let orderURL = created.location else {
            throw DesaError.system("the ACME server at \(dir.newOrder) sent no Location header for the order")
        }
        var order = try decode(ACMEOrderResource.self, created, what: "an order")
        let deadline = Date().addingTimeInterval(settings.validationDeadline)

        if order.status == "pending" {
            try await authorize(order.authorizations, key: key, signer: signer, http01: http01, dns01: dns01, deadline: deadline)
            order = try await poll(orderURL, as: ACMEOrderResource.self, what: "the order", key: key, signer: signer,
                                   deadline: deadline) { $0.status != "pending" }
        }
        guard order.status == "ready" else { throw orderFailure(order, url: orderURL, expecting: "ready") }

        let csr = try ACMECertificates.csr(names: names, key: certKey)
        let finalized = try await post(order.finalize, payload: .object([("csr", .string(Base64URL.encode(csr)))]), signer: signer, key: key)
        order = try decode(ACMEOrderResource.self, finalized, what: "an order")
        if order.status == "processing" || order.status == "ready" {
            order = try await poll(orderURL, as: ACMEOrderResource.self, what: "the order", key: key, signer: signer,
                                   deadline: deadline) { $0.status != "processing" && $0.status != "ready" }
        }
        guard order.status == "valid", let certificateURL = order.certificate else {
            throw orderFailure(order, url: orderURL, expecting: "valid")
        }
        let download = try await post(certificateURL, payload: nil, signer: signer, key: key, accept: "application/pem-certificate-chain")
        return try Self.issued(chainPEM: String(decoding: download.body, as: UTF8.self), url: certificateURL, names: names, key: certKey)
    }

    private func orderFailure(_ order: ACMEOrderResource, url: String, expecting: String) -> Error {
        if let doc = order.error { return doc.problem(url: url) }
        return DesaError.system("the order \(url) is \(order.status), not \(expecting)")
    }

    /// What was presented for a challenge, to remove afterwards.
    private enum Presented: Sendable {
        case http(token: String)
        case dns(domain: String, txt: String)
    }

    private func authorize(_ urls: [String], key: ACMEAccountKey, signer: ACMEAccountKey.Signer,
                           http01: any HTTP01Responder, dns01: (any DNS01Responder)?, deadline: Date) async throws {
        var failed: [String: ACMEProblem] = [:], succeeded: [String] = []
        var presented: [Presented] = []
        var waiting: [(name: String, url: String, challenge: String?)] = []
        do {
            for url in urls {
                let r = try await post(url, payload: nil, signer: signer, key: key)
                let authz = try decode(ACMEAuthorizationResource.self, r, what: "an authorization")
                let name = authz.name
                switch authz.status {
                case "valid":
                    succeeded.append(name)
                case "pending":
                    let type = name.hasPrefix("*.") ? "dns-01" : "http-01"
                    guard let challenge = authz.challenges.first(where: { $0.type == type }) else {
                        failed[name] = ACMEProblem(type: "desa:noUsableChallenge",
                                                   detail: "the CA offers no \(type) challenge for \(name) (it offers \(authz.challenges.map(\.type).joined(separator: ", ")))",
                                                   url: url)
                        continue
                    }
                    guard challenge.status == "pending" else {  // already being validated
                        waiting.append((name, url, nil))
                        continue
                    }
                    guard let token = challenge.token else {
                        throw DesaError.system("the ACME server at \(url) sent a \(type) challenge without a token")
                    }
                    let keyAuthorization = key.keyAuthorization(token: token)
                    if type == "http-01" {
                        try ChallengeDirectory.checkToken(token)
                        try http01.present(token: token, keyAuthorization: keyAuthorization)
                        presented.append(.http(token: token))
                    } else if let dns01 {
                        let txt = Base64URL.encode(SHA256.hash(data: Data(keyAuthorization.utf8)))
                        try await dns01.present(domain: authz.identifier.value, txtValue: txt)
                        presented.append(.dns(domain: authz.identifier.value, txt: txt))
                    }
                    waiting.append((name, url, challenge.url))
                default:
                    failed[name] = Self.authorizationProblem(authz, url: url)
                }
            }
            // Everything is in place: now ask the CA to look.
            var polling: [(name: String, url: String)] = []
            for w in waiting {
                if let challenge = w.challenge {
                    do {
                        _ = try await post(challenge, payload: .object([]), signer: signer, key: key)
                    } catch let p as ACMEProblem where !p.isTransient {
                        failed[w.name] = p   // e.g. the CA refuses this name now
                        continue
                    }
                }
                polling.append((w.name, w.url))
            }
            for p in polling {
                let authz = try await poll(p.url, as: ACMEAuthorizationResource.self, what: "the authorization for \(p.name)",
                                           key: key, signer: signer, deadline: deadline) { $0.status != "pending" }
                if authz.status == "valid" { succeeded.append(p.name) } else { failed[p.name] = Self.authorizationProblem(authz, url: p.url) }
            }
        } catch {
            await cleanUp(presented, http01: http01, dns01: dns01)
            throw error
        }
        await cleanUp(presented, http01: http01, dns01: dns01)
        if !failed.isEmpty { throw ACMEAuthorizationFailure(failed: failed, succeeded: succeeded) }
    }

    private func cleanUp(_ presented: [Presented], http01: any HTTP01Responder, dns01: (any DNS01Responder)?) async {
        for p in presented {
            switch p {
            case .http(let token): http01.cleanUp(token: token)
            case .dns(let domain, let txt): await dns01?.cleanUp(domain: domain, txtValue: txt)
            }
        }
    }

    static func authorizationProblem(_ authz: ACMEAuthorizationResource, url: String) -> ACMEProblem {
        if let doc = authz.challenges.compactMap(\.error).first { return doc.problem(url: url) }
        return ACMEProblem(type: "desa:authorizationFailed",
                           detail: "the authorization for \(authz.name) is \(authz.status) and the CA gave no reason", url: url)
    }

    /// Checks the chain the CA served against the order and builds the result.
    static func issued(chainPEM: String, url: String, names: [String], key: P256.Signing.PrivateKey) throws -> IssuedCertificate {
        let chain: [Certificate]
        do { chain = try ACMECertificates.parseChain(chainPEM) } catch {
            throw DesaError.system("the certificate at \(url) is not a PEM certificate chain: \(error)")
        }
        guard let leaf = chain.first else {
            throw DesaError.system("the certificate at \(url) holds no certificate (\(Quote.show(String(chainPEM.prefix(100)))))")
        }
        let leafNames = try ACMECertificates.dnsNames(leaf)
        let missing = names.filter { !leafNames.contains($0) }
        guard missing.isEmpty else {
            throw DesaError(.checkFailed, "the certificate at \(url) does not name \(missing.joined(separator: ", ")) (it names \(leafNames.joined(separator: ", ")))")
        }
        guard leaf.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw DesaError(.checkFailed, "the certificate at \(url) is not for the key of the request")
        }
        return IssuedCertificate(chainPEM: try chain.map(ACMECertificates.pem).joined(),
                                 keyPEM: key.pemRepresentation + "\n",
                                 notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter,
                                 names: leafNames, serialHex: ACMECertificates.serialHex(leaf),
                                 ariCertID: try? ACMECertificates.ariCertID(leaf), certificateURL: url)
    }

    // MARK: Renewal information (RFC 9773)

    /// The ARI certificate ID of the first certificate in `certificatePEM`.
    public static func ariCertID(certificatePEM: String) throws -> String {
        try ACMECertificates.ariCertID(pem: certificatePEM)
    }

    /// The CA's suggested renewal window for the certificate (first in `certificatePEM`);
    /// nil when the CA has no renewalInfo endpoint.
    public func renewalInfo(for certificatePEM: String) async throws -> RenewalInfo? {
        let id = try ACMECertificates.ariCertID(pem: certificatePEM)
        guard var base = try await directory().renewalInfo else { return nil }
        while base.hasSuffix("/") { base.removeLast() }
        let url = base + "/" + id
        let r = try await http.send(.GET, url, accept: "application/json")
        guard r.status == 200 else { throw problem(r) }
        let doc = try decode(ACMERenewalInfoResource.self, r, what: "renewal information")
        guard let start = ACMEHTTP.parseTimestamp(doc.suggestedWindow.start),
              let end = ACMEHTTP.parseTimestamp(doc.suggestedWindow.end), start <= end else {
            throw DesaError.system("the ACME server at \(url) sent a suggestedWindow that is not two RFC 3339 times in order: \(r.snippet)")
        }
        return RenewalInfo(certID: id, windowStart: start, windowEnd: end, explanationURL: doc.explanationURL, retryAfter: r.retryAfter)
    }

    // MARK: Requests

    /// A signed POST (`payload` nil: POST-as-GET). A `badNonce` is retried with the nonce it
    /// came with; any other error status is thrown as the CA's problem.
    private func post(_ url: String, payload: JSON?, signer: ACMEAccountKey.Signer, key: ACMEAccountKey,
                      accept: String? = nil) async throws -> ACMEResponse {
        var attempt = 0
        while true {
            let nonce = try await takeNonce()
            let body = try key.jws(url: url, nonce: nonce, payload: payload?.bytes(), signer: signer)
            let r = try await http.send(.POST, url, body: body, contentType: "application/jose+json", accept: accept)
            keepNonce(r)
            guard r.status < 400 else {
                let error = problem(r)
                if let p = error as? ACMEProblem, p.isACME("badNonce"), attempt < settings.badNonceRetries {
                    attempt += 1
                    badNonceRetries += 1
                    continue
                }
                throw error
            }
            return r
        }
    }

    private func takeNonce() async throws -> String {
        if let n = nonces.popLast() { return n }
        let url = try await directory().newNonce
        let r = try await http.send(.HEAD, url)
        guard r.status < 400 else { throw problem(r) }
        guard let nonce = r.nonce, !nonce.isEmpty else {
            throw DesaError.system("the ACME server at \(url) sent no Replay-Nonce header")
        }
        return nonce
    }

    private func keepNonce(_ r: ACMEResponse) {
        guard let n = r.nonce, !n.isEmpty else { return }
        nonces.append(n)
        if nonces.count > 16 { nonces.removeFirst() }
    }

    /// Requests a resource (POST-as-GET) until `done` says so, waiting as Retry-After asks
    /// (or a little longer each time), at most until `deadline`.
    private func poll<T: ACMEStatusResource>(_ url: String, as type: T.Type, what: String, key: ACMEAccountKey,
                                             signer: ACMEAccountKey.Signer, deadline: Date,
                                             done: (T) -> Bool) async throws -> T {
        var delay = 0.2
        while true {
            let r = try await post(url, payload: nil, signer: signer, key: key)
            let value = try decode(T.self, r, what: what)
            if done(value) { return value }
            let wait = max(0.1, r.retryAfter?.timeIntervalSinceNow ?? delay)
            delay = min(delay * 1.5, 3)
            guard Date().addingTimeInterval(wait) < deadline else {
                throw DesaError.system("\(what) (\(url)) is still \(value.status) after \(Int(settings.validationDeadline)) s")
            }
            try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
        }
    }

    /// The error for a response with an error status: the CA's problem document, or a
    /// `DesaError` naming the URL when the body is not one.
    private func problem(_ r: ACMEResponse) -> Error {
        if let doc = try? JSONDecoder().decode(ACMEProblemDocument.self, from: Data(r.body)), doc.type != nil {
            return doc.problem(status: r.status, retryAfter: r.retryAfter, url: r.url)
        }
        return DesaError.system("the ACME server at \(r.url) answered HTTP \(r.status) with \(r.snippet)")
    }

    private func decode<T: Decodable>(_ type: T.Type, _ r: ACMEResponse, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(r.body))
        } catch let error as DecodingError {
            throw DesaError.system("the ACME server at \(r.url) sent \(what) that is not valid: \(Self.describe(error)); the body begins with \(r.snippet)")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let c): return c.codingPath.isEmpty ? "it is not JSON (truncated or garbage)" : "\(path(c)) is malformed"
        case .keyNotFound(let key, let c): return "\(c.codingPath.isEmpty ? "" : path(c) + ".")\(key.stringValue) is missing"
        case .typeMismatch(_, let c): return "\(path(c)) has the wrong type"
        case .valueNotFound(_, let c): return "\(path(c)) is null"
        @unknown default: return "\(error)"
        }
    }
}
