import Crypto
import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import Provisioner

/// The ACME client against a real pebble (and nginx serving http-01), and against a fake
/// server in this process for the answers pebble never gives. Ports 14000–14999.
@Suite(.serialized)
struct ACMEClientTests {
    let runner = SystemProcessRunner()

    // MARK: Helpers

    /// pebble + nginx for one test, stopped afterwards whatever happens.
    func withPebble(base: Int, options: PebbleHarness.Options = .init(),
                    _ body: (PebbleHarness, ChallengeNginx) async throws -> Void) async throws {
        let nginx = try ChallengeNginx(port: base + 10)
        defer { nginx.stop() }
        let pebble = try await PebbleHarness.start(basePort: base, httpPort: nginx.port, options: options)
        defer { pebble.stop() }
        do {
            try await body(pebble, nginx)
        } catch {
            Issue.record("pebble's log: \(pebble.log())")
            throw error
        }
    }

    func client(_ pebble: PebbleHarness, keyPath: String, account: ACMEAccountOptions = .init(),
                directoryURL: String? = nil) throws -> ACMEClient {
        try ACMEClient(directoryURL: directoryURL ?? pebble.directoryURL, trustRoots: [pebble.listenerCert],
                       accountKeyPath: keyPath, account: account)
    }

    func openssl(_ args: String...) throws -> String {
        let r = try runner.run(["/usr/bin/openssl"] + args)
        try #require(r.ok, "openssl \(args.joined(separator: " ")): \(r.message)")
        return r.stdout
    }

    /// The leaf of `chainPEM` in a file, for openssl.
    func leafFile(_ chainPEM: String, in dir: String) throws -> String {
        let path = dir + "/leaf-\(UInt32.random(in: 0...UInt32.max)).pem"
        try TestPEM.blocks(chainPEM)[0].write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    // MARK: 1. Account

    @Test func accountIsRegisteredOnceAndItsKeyReused() async throws {
        try await withPebble(base: 14100) { pebble, _ in
            let keyPath = pebble.dir + "/account.key"
            let first = try await ACMEClient.with(directoryURL: pebble.directoryURL, trustRoots: [pebble.listenerCert],
                                                  accountKeyPath: keyPath,
                                                  account: .init(contact: ["admin@desa.test"])) { try await $0.account() }
            #expect(first.created)
            #expect(first.status == "valid")
            #expect(first.contact == ["mailto:admin@desa.test"])
            var st = stat()
            try #require(stat(keyPath, &st) == 0)
            #expect(st.st_mode & 0o777 == 0o600)
            let keyBefore = Support.read(keyPath)
            #expect(keyBefore.hasPrefix("-----BEGIN PRIVATE KEY-----"))

            // A second client (a later run of desa): same key, same account, nothing created.
            let second = try await ACMEClient.with(directoryURL: pebble.directoryURL, trustRoots: [pebble.listenerCert],
                                                   accountKeyPath: keyPath) { try await $0.account() }
            #expect(!second.created)
            #expect(second.url == first.url)
            #expect(second.thumbprint == first.thumbprint)
            #expect(Support.read(keyPath) == keyBefore)

            // Another key is another account.
            let other = try await ACMEClient.with(directoryURL: pebble.directoryURL, trustRoots: [pebble.listenerCert],
                                                  accountKeyPath: pebble.dir + "/other.key") { try await $0.account() }
            #expect(other.created && other.url != first.url)

            // The system's roots do not trust pebble's listener: a TLS error naming the URL.
            let untrusting = try ACMEClient(directoryURL: pebble.directoryURL, accountKeyPath: pebble.dir + "/third.key")
            let tls = await #expect(throws: DesaError.self) { try await untrusting.account() }
            try await untrusting.shutdown()
            #expect(tls?.message == "GET \(pebble.directoryURL) failed: TLS: the server's certificate is not trusted (CERTIFICATE_VERIFY_FAILED)",
                    "\(String(describing: tls))")
        }
    }

    // MARK: 2. Issuance

    @Test func issuesACertificateForFiveNamesDespiteRejectedNonces() async throws {
        // -strict, and 30 % of good nonces rejected: badNonce must be retried transparently.
        try await withPebble(base: 14200, options: .init(strict: true, nonceReject: 30)) { pebble, nginx in
            let names = ["desa.test", "www.desa.test", "mail.desa.test", "a.b.desa.test", "kantor.desa.test"]
            let client = try client(pebble, keyPath: pebble.dir + "/account.key")
            let cert: IssuedCertificate
            do {
                cert = try await client.issue(.init(names: names + ["WWW.desa.test."]),
                                              http01: ChallengeDirectory(path: nginx.challengeDir))
            } catch {
                try? await client.shutdown()
                throw error
            }
            let retries = await client.badNonceRetries
            try await client.shutdown()
            #expect(retries > 0, "with 30 % of nonces rejected some request must have been retried")

            let verify = try pebble.verify(chainPEM: cert.chainPEM)
            #expect(verify.ok, "openssl verify: \(verify.message)")
            #expect(TestPEM.blocks(cert.chainPEM).count == 2)
            let leaf = try leafFile(cert.chainPEM, in: pebble.dir)
            let san = try openssl("x509", "-in", leaf, "-noout", "-ext", "subjectAltName")
            for n in names { #expect(san.contains("DNS:\(n)"), "\(n) in \(san)") }
            #expect(Set(cert.names) == Set(names))

            // The key is the certificate's, PKCS#8.
            #expect(cert.keyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
            let keyFile = pebble.dir + "/cert.key"
            try cert.keyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
            #expect(try openssl("pkey", "-in", keyFile, "-pubout") == openssl("x509", "-in", leaf, "-noout", "-pubkey"))

            // Dates and serial as openssl reads them.
            let end = try openssl("x509", "-in", leaf, "-noout", "-enddate", "-dateopt", "iso_8601")
            let endDate = try #require(ISO8601DateFormatter().date(from: end.replacingOccurrences(of: "notAfter=", with: "")
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " ", with: "T")))
            #expect(abs(cert.notAfter.timeIntervalSince(endDate)) < 1)
            #expect(cert.notAfter.timeIntervalSinceNow > 4 * 365 * 86400)   // pebble: 5 years
            #expect(cert.notBefore < Date().addingTimeInterval(60))
            let serial = try openssl("x509", "-in", leaf, "-noout", "-serial")
                .replacingOccurrences(of: "serial=", with: "").trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            // openssl prints whole bytes (`02EB...`); compare the numbers, not their padding.
            #expect(String(serial.drop(while: { $0 == "0" })) == String(cert.serialHex.drop(while: { $0 == "0" })))

            // pebble fetched every token through nginx; nothing is left behind.
            #expect(nginx.accessLog().components(separatedBy: "/.well-known/acme-challenge/").count - 1 >= names.count)
            #expect(nginx.challengeFiles().isEmpty, "left: \(nginx.challengeFiles())")
        }
    }

    // MARK: 3. A name that cannot be validated

    @Test func aFailedNameIsReportedAndTheRestIssuedWithoutIt() async throws {
        try await withPebble(base: 14300) { pebble, nginx in
            try await pebble.addA("gone.desa.test", ["127.0.0.2"])   // nothing listens there
            try await ACMEClient.with(directoryURL: pebble.directoryURL, trustRoots: [pebble.listenerCert],
                                      accountKeyPath: pebble.dir + "/account.key") { client in
                let responder = ChallengeDirectory(path: nginx.challengeDir)
                let names = ["ok1.desa.test", "gone.desa.test", "ok2.desa.test"]
                let failure = await #expect(throws: ACMEAuthorizationFailure.self) {
                    try await client.issue(.init(names: names), http01: responder)
                }
                let f = try #require(failure)
                #expect(Array(f.failed.keys) == ["gone.desa.test"])
                #expect(f.succeeded.sorted() == ["ok1.desa.test", "ok2.desa.test"])
                let problem = try #require(f.failed["gone.desa.test"])
                #expect(problem.type == "urn:ietf:params:acme:error:connection", "\(problem)")
                #expect(problem.detail.contains("127.0.0.2"), "\(problem)")
                #expect("\(f)".contains("gone.desa.test (connection: "), "\(f)")
                #expect(nginx.challengeFiles().isEmpty, "cleaned up after a failure too: \(nginx.challengeFiles())")

                // The caller drops the name and orders again; this time with the key of a
                // certificate it already has.
                let keyFile = pebble.dir + "/existing.key"
                _ = try openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", keyFile)   // SEC 1 form
                let cert = try await client.issue(.init(names: ["ok1.desa.test", "ok2.desa.test"], keyPEM: Support.read(keyFile)),
                                                  http01: responder)
                #expect(cert.names.sorted() == ["ok1.desa.test", "ok2.desa.test"])
                let leaf = try leafFile(cert.chainPEM, in: pebble.dir)
                #expect(try openssl("pkey", "-in", keyFile, "-pubout") == openssl("x509", "-in", leaf, "-noout", "-pubkey"))
                let verify = try pebble.verify(chainPEM: cert.chainPEM)
                #expect(verify.ok, "\(verify.message)")
            }
        }
    }

    @Test func aWildcardIsValidatedThroughDNS01() async throws {
        try await withPebble(base: 14700) { pebble, nginx in
            let dns = pebble.dns01
            let cert = try await ACMEClient.with(directoryURL: pebble.directoryURL, trustRoots: [pebble.listenerCert],
                                                 accountKeyPath: pebble.dir + "/account.key") { client in
                try await client.issue(.init(names: ["*.desa.test", "desa.test"]), http01: ChallengeDirectory(path: nginx.challengeDir),
                                       dns01: dns)
            }
            #expect(Set(cert.names) == ["*.desa.test", "desa.test"])
            #expect(try pebble.verify(chainPEM: cert.chainPEM).ok)
            let calls = dns.calls.withLockedValue { $0 }
            // One TXT record for the wildcard, at the base name, removed afterwards; the apex by http-01.
            #expect(calls.count == 2 && calls[0].hasPrefix("present desa.test ") && calls[1].hasPrefix("cleanUp desa.test "), "\(calls)")
            let txt = String(calls[0].split(separator: " ")[2])
            #expect(txt.utf8.count == 43 && Base64URL.decode(txt)?.count == 32)
            #expect(nginx.accessLog().contains("/.well-known/acme-challenge/"))
        }
    }

    @Test func aWildcardWithoutDNSResponderIsRefusedBeforeOrdering() async throws {
        let client = try ACMEClient(directoryURL: "https://127.0.0.1:14998/dir", accountKeyPath: "/nonexistent/key")
        await #expect(throws: DesaError.invalid("*.desa.test is a wildcard name: it needs a dns-01 responder")) {
            try await client.issue(.init(names: ["desa.test", "*.desa.test"]), http01: ChallengeDirectory(path: "/nonexistent"))
        }
        await #expect(throws: DesaError.self) {
            try await client.issue(.init(names: ["desa test"]), http01: ChallengeDirectory(path: "/nonexistent"))
        }
        try await client.shutdown()
    }

    // MARK: 4. External Account Binding

    @Test func externalAccountBindingIsRequiredAndWorks() async throws {
        let macKey = Base64URL.encode((0..<48).map { UInt8($0 * 7 % 256) })
        try await withPebble(base: 14400, options: .init(eabKeys: ["desa-kid": macKey])) { pebble, _ in
            let keyPath = pebble.dir + "/account.key"
            let without = try client(pebble, keyPath: keyPath)
            #expect(try await without.externalAccountRequired())
            let refused = await #expect(throws: ACMEProblem.self) { try await without.account() }
            try await without.shutdown()
            #expect(refused?.isACME("externalAccountRequired") == true, "\(String(describing: refused))")
            #expect("\(refused!)".hasPrefix("externalAccountRequired: "))

            let wrong = try client(pebble, keyPath: keyPath,
                                   account: .init(eab: .init(kid: "desa-kid", hmacKey: Base64URL.encode([UInt8](repeating: 1, count: 48)))))
            let bad = await #expect(throws: ACMEProblem.self) { try await wrong.account() }
            try await wrong.shutdown()
            #expect(bad?.isACME("unauthorized") == true || bad?.isACME("malformed") == true, "\(String(describing: bad))")

            let right = try client(pebble, keyPath: keyPath, account: .init(eab: .init(kid: "desa-kid", hmacKey: macKey)))
            let account = try await right.account()
            try await right.shutdown()
            #expect(account.created && account.status == "valid")
        }
    }

    // MARK: 5. Faults a real CA rarely shows

    @Test func aCAThatIsDownIsNamed() async throws {
        let url = "https://127.0.0.1:14599/dir"
        try #require(!tcpAccepts(14599))
        let client = try ACMEClient(directoryURL: url, accountKeyPath: "/tmp/desa-acme-unused.key")
        let error = await #expect(throws: DesaError.self) { try await client.account() }
        try await client.shutdown()
        #expect(error?.message.contains(url) == true, "\(String(describing: error))")
        #expect(error?.message == "GET \(url) failed: Connection refused", "\(String(describing: error))")
    }

    @Test func garbageTruncatedAndRateLimitedAnswers() async throws {
        let port = 14500
        let base = "http://127.0.0.1:\(port)"
        @Sendable func directory(_ prefix: String) -> String {
            #"{"newNonce":"\#(base)/\#(prefix)/nonce","newAccount":"\#(base)/\#(prefix)/account","newOrder":"\#(base)/\#(prefix)/order"}"#
        }
        let calls = NIOLockedCounter()
        let server = try await FakeHTTPServer.start(port: port) { req in
            let parts = req.path.split(separator: "/").map(String.init)
            let prefix = parts.first ?? "", resource = parts.last ?? ""
            if resource == "nonce" { return .http(status: 200, headers: ["Replay-Nonce": "n-\(calls.next())"], body: "") }
            switch (prefix, resource) {
            case ("garbage", "dir"): return .http(status: 200, headers: ["Content-Type": "text/html"], body: "<html>Bad gateway</html>")
            case ("short", "dir"):
                return .raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n" + String(directory("short").prefix(60)))
            case ("cut", "dir"):   // no Content-Length: the body ends where the connection does
                return .raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + String(directory("cut").prefix(60)))
            case ("fields", "dir"): return .json(200, #"{"newNonce":"\#(base)/fields/nonce","newAccount":"x"}"#)
            case ("down", "dir"): return .http(status: 502, headers: ["Content-Type": "text/html"], body: "<html>502 Bad Gateway</html>")
            case ("rl", "dir"), ("rl2", "dir"), ("bn", "dir"): return .json(200, directory(prefix))
            case ("rl", "account"):
                return .json(429, #"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new accounts","status":429,"subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no","identifier":{"type":"dns","value":"x.desa.test"}}]}"#,
                             headers: ["Content-Type": "application/problem+json", "Retry-After": "120"])
            case ("rl2", "account"):
                return .json(429, #"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow down"}"#,
                             headers: ["Content-Type": "application/problem+json", "Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"])
            case ("bn", "account"):
                // Two bad nonces, then the account.
                let n = calls.next()
                if calls.badNonces < 2 {
                    calls.badNonce()
                    return .json(400, #"{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}"#,
                                 headers: ["Replay-Nonce": "bad-\(n)"])
                }
                return .http(status: 201, headers: ["Content-Type": "application/json", "Location": "\(base)/bn/acct/1", "Replay-Nonce": "z"],
                             body: #"{"status":"valid","contact":[]}"#)
            default: return .json(404, #"{"type":"urn:ietf:params:acme:error:malformed","detail":"no such thing"}"#)
            }
        }
        defer { server.close() }
        let dir = try TestDirs.make("desa-acme-fake")
        defer { try? FileManager.default.removeItem(atPath: dir) }

        func failure(_ prefix: String) async throws -> Error {
            let client = try ACMEClient(directoryURL: "\(base)/\(prefix)/dir", accountKeyPath: "\(dir)/\(prefix).key")
            do {
                _ = try await client.account()
            } catch {
                try await client.shutdown()
                return error
            }
            try await client.shutdown()
            Issue.record("\(prefix): account() succeeded")
            return DesaError.system("none")
        }

        let garbage = try #require(try await failure("garbage") as? DesaError)
        #expect(garbage.message.contains("\(base)/garbage/dir") && garbage.message.contains("not JSON"), "\(garbage)")
        #expect(garbage.message.contains("<html>Bad gateway"), "\(garbage)")

        let short = try #require(try await failure("short") as? DesaError)
        #expect(short.message == "GET \(base)/short/dir failed: the response ended before it was complete (truncated)", "\(short)")

        let cut = try #require(try await failure("cut") as? DesaError)
        #expect(cut.message.contains("\(base)/cut/dir") && cut.message.contains("not JSON (truncated or garbage)"), "\(cut)")

        let fields = try #require(try await failure("fields") as? DesaError)
        #expect(fields.message.contains("newOrder is missing"), "\(fields)")

        let down = try #require(try await failure("down") as? DesaError)
        #expect(down.message.contains("\(base)/down/dir answered HTTP 502"), "\(down)")

        let limited = try #require(try await failure("rl") as? ACMEProblem)
        #expect(limited.isACME("rateLimited") && limited.status == 429)
        let wait = try #require(limited.retryAfter).timeIntervalSinceNow
        #expect(wait > 110 && wait <= 120, "Retry-After: 120 gave \(wait) s")
        #expect(limited.subproblems == [.init(identifier: "dns:x.desa.test", type: "urn:ietf:params:acme:error:rejectedIdentifier", detail: "no")])
        #expect("\(limited)".hasPrefix("rateLimited: too many new accounts; dns:x.desa.test: rejectedIdentifier: no (retry after "), "\(limited)")
        #expect(limited.url == "\(base)/rl/account")

        let limitedUntil = try #require(try await failure("rl2") as? ACMEProblem)
        #expect(limitedUntil.retryAfter == Date(timeIntervalSince1970: 2_139_722_880))   // 2037-10-21 07:28:00 UTC

        // badNonce twice: sent again each time with the nonce that came with the error.
        let client = try ACMEClient(directoryURL: "\(base)/bn/dir", accountKeyPath: "\(dir)/bn.key")
        let account = try await client.account()
        let retries = await client.badNonceRetries
        try await client.shutdown()
        #expect(account.url == "\(base)/bn/acct/1" && account.created)
        #expect(retries == 2)
        let sent = server.requests.filter { $0.path == "/bn/account" }.map { ACMEClientTests.nonce(of: $0.body) }
        #expect(sent.count == 3 && sent[1].hasPrefix("bad-") && sent[2].hasPrefix("bad-"), "\(sent)")
    }

    /// The nonce in a flattened JWS's protected header.
    static func nonce(of jws: [UInt8]) -> String {
        guard let outer = try? JSONSerialization.jsonObject(with: Data(jws)) as? [String: Any],
              let protected = outer["protected"] as? String, let header = Base64URL.decode(protected),
              let h = try? JSONSerialization.jsonObject(with: Data(header)) as? [String: Any] else { return "" }
        return h["nonce"] as? String ?? ""
    }

    // MARK: 6. ARI and profiles

    @Test func renewalInfoAndReplacesThroughADirectoryWithARI() async throws {
        try await withPebble(base: 14600) { pebble, nginx in
            let fakePort = 14620
            let pebbleBase = "https://127.0.0.1:\(pebble.acmePort)"
            let fakeBase = "http://127.0.0.1:\(fakePort)"
            let directory = """
            {"newNonce":"\(pebbleBase)/nonce-plz","newAccount":"\(pebbleBase)/sign-me-up","newOrder":"\(pebbleBase)/order-plz",
             "revokeCert":"\(pebbleBase)/revoke-cert","keyChange":"\(pebbleBase)/rollover-account-key",
             "renewalInfo":"\(fakeBase)/renewal-info/",
             "meta":{"profiles":{"classic":"the usual 90 days","shortlived":"6 days"}}}
            """
            let server = try await FakeHTTPServer.start(port: fakePort) { req in
                if req.path == "/dir" { return .json(200, directory) }
                if req.path.hasPrefix("/renewal-info/") {
                    return .json(200, #"{"suggestedWindow":{"start":"2030-01-02T03:04:05Z","end":"2030-01-03T03:04:05.5Z"},"explanationURL":"https://ca.example/why"}"#,
                                 headers: ["Retry-After": "21600"])
                }
                return .json(404, #"{"type":"urn:ietf:params:acme:error:malformed","detail":"no"}"#)
            }
            defer { server.close() }

            try await ACMEClient.with(directoryURL: "\(fakeBase)/dir", trustRoots: [pebble.listenerCert],
                                      accountKeyPath: pebble.dir + "/account.key") { client in
                #expect(try await client.profiles() == ["classic": "the usual 90 days", "shortlived": "6 days"])
                let responder = ChallengeDirectory(path: nginx.challengeDir)
                let cert = try await client.issue(.init(names: ["ari.desa.test"]), http01: responder)

                // The certificate ID, computed independently from openssl's view of the leaf.
                let leaf = try leafFile(cert.chainPEM, in: pebble.dir)
                let text = try openssl("x509", "-in", leaf, "-noout", "-ext", "authorityKeyIdentifier", "-serial")
                let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                let akiHex = try #require(lines.first { $0.contains(":") && !$0.contains("Identifier") && !$0.hasPrefix("serial") })
                    .replacingOccurrences(of: "keyid:", with: "").replacingOccurrences(of: ":", with: "")
                var serialBytes = Self.bytes(hex: try #require(lines.first { $0.hasPrefix("serial=") }).dropFirst(7))
                while serialBytes.count > 1 && serialBytes[0] == 0 && serialBytes[1] < 0x80 { serialBytes.removeFirst() }
                if serialBytes[0] >= 0x80 { serialBytes.insert(0, at: 0) }
                let expectedID = Base64URL.encode(Self.bytes(hex: Substring(akiHex))) + "." + Base64URL.encode(serialBytes)
                #expect(cert.ariCertID == expectedID)
                #expect(try ACMEClient.ariCertID(certificatePEM: cert.chainPEM) == expectedID)

                let info = try #require(try await client.renewalInfo(for: cert.chainPEM))
                #expect(server.requests.last?.path == "/renewal-info/\(expectedID)")
                #expect(info.certID == expectedID)
                #expect(info.windowStart == Date(timeIntervalSince1970: 1_893_553_445))
                #expect(info.windowEnd == Date(timeIntervalSince1970: 1_893_639_845.5))
                #expect(info.explanationURL == "https://ca.example/why")
                let retry = try #require(info.retryAfter).timeIntervalSinceNow
                #expect(retry > 21_500 && retry <= 21_600)

                // A profile the directory does not offer is refused before ordering.
                await #expect(throws: DesaError.self) {
                    try await client.issue(.init(names: ["ari.desa.test"], profile: "nope"), http01: responder)
                }
                // The renewal names what it replaces and the profile; pebble 2.4.0 knows
                // neither field and ignores both (Go's JSON decoding): the order succeeds.
                let renewed = try await client.issue(.init(names: ["ari.desa.test"], replaces: cert.ariCertID, profile: "classic",
                                                           keyPEM: cert.keyPEM), http01: responder)
                #expect(renewed.serialHex != cert.serialHex)
                #expect(renewed.keyPEM == cert.keyPEM)
            }

            // pebble's own directory has no renewalInfo: nil, not an error.
            try await ACMEClient.with(directoryURL: pebble.directoryURL, trustRoots: [pebble.listenerCert],
                                      accountKeyPath: pebble.dir + "/account.key") { client in
                let cert = try await client.issue(.init(names: ["plain.desa.test"]), http01: ChallengeDirectory(path: nginx.challengeDir))
                #expect(try await client.renewalInfo(for: cert.chainPEM) == nil)
                #expect(try await client.profiles() == [:])
            }
        }
    }

    @Test func newOrderPayloadCarriesReplacesAndProfile() {
        #expect(ACMEClient.newOrderPayload(names: ["desa.test", "*.desa.test"], replaces: "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", profile: "classic").serialized()
            == #"{"identifiers":[{"type":"dns","value":"desa.test"},{"type":"dns","value":"*.desa.test"}],"replaces":"aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE","profile":"classic"}"#)
        #expect(ACMEClient.newOrderPayload(names: ["desa.test"], replaces: nil, profile: nil).serialized()
            == #"{"identifiers":[{"type":"dns","value":"desa.test"}]}"#)
    }

    @Test func chooseTimeIsInTheWindowOrItsStartOncePassed() {
        let now = Date(timeIntervalSince1970: 2_000_000_000)
        let ahead = RenewalInfo(certID: "x", windowStart: now.addingTimeInterval(3600), windowEnd: now.addingTimeInterval(7200))
        var times = Set<Date>()
        for _ in 0..<200 {
            let t = ahead.chooseTime(now: now)
            #expect(t >= ahead.windowStart && t < ahead.windowEnd)
            times.insert(t)
        }
        #expect(times.count > 150, "spread over the window, not one moment")
        let passed = RenewalInfo(certID: "x", windowStart: now.addingTimeInterval(-7200), windowEnd: now.addingTimeInterval(-3600))
        #expect(passed.chooseTime(now: now) == passed.windowStart)
    }

    @Test func retryAfterAndTimestampsParse() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        #expect(ACMEHTTP.parseRetryAfter("120", now: now) == now.addingTimeInterval(120))
        #expect(ACMEHTTP.parseRetryAfter("Wed, 21 Oct 2037 07:28:00 GMT", now: now) == Date(timeIntervalSince1970: 2_139_722_880))
        #expect(ACMEHTTP.parseRetryAfter("soon", now: now) == nil)
        #expect(ACMEHTTP.parseTimestamp("2030-01-02T03:04:05Z") == Date(timeIntervalSince1970: 1_893_553_445))
        #expect(ACMEHTTP.parseTimestamp("2030-01-02T04:04:05.25+01:00") == Date(timeIntervalSince1970: 1_893_553_445.25))
    }

    @Test func challengeDirectoryWritesWorldReadableFilesAndRefusesPathTokens() throws {
        let dir = try TestDirs.make("desa-acme-challenges")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let responder = ChallengeDirectory(path: dir + "/acme")
        try responder.present(token: "tok_EN-1", keyAuthorization: "tok_EN-1.thumb")
        #expect(Support.read(dir + "/acme/tok_EN-1") == "tok_EN-1.thumb")
        var st = stat()
        #expect(stat(dir + "/acme/tok_EN-1", &st) == 0 && st.st_mode & 0o777 == 0o644)
        #expect(throws: DesaError.self) { try responder.present(token: "../escape", keyAuthorization: "x") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/escape"))
        responder.cleanUp(token: "tok_EN-1")
        #expect(!FileManager.default.fileExists(atPath: dir + "/acme/tok_EN-1"))
    }

    /// The client checks what the CA served: a chain missing a name, or for another key,
    /// is refused (pebble never serves one, so a certificate made by openssl stands in).
    @Test func aServedChainMustCoverTheNamesAndKey() throws {
        let dir = try TestDirs.make("desa-acme-check")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", dir + "/k.pem", "-out", dir + "/c.pem", "-days", "2", "-subj", "/CN=a.desa.test",
                        "-addext", "subjectAltName=DNS:a.desa.test,DNS:b.desa.test")
        let chain = Support.read(dir + "/c.pem")
        let key = try P256.Signing.PrivateKey(pemRepresentation: Support.read(dir + "/k.pem"))
        let url = "https://ca.example/cert/1"
        let ok = try ACMEClient.issued(chainPEM: chain, url: url, names: ["b.desa.test", "a.desa.test"], key: key)
        #expect(ok.names == ["a.desa.test", "b.desa.test"] && ok.certificateURL == url)
        #expect(throws: DesaError(.checkFailed, "the certificate at \(url) does not name c.desa.test (it names a.desa.test, b.desa.test)")) {
            try ACMEClient.issued(chainPEM: chain, url: url, names: ["a.desa.test", "c.desa.test"], key: key)
        }
        #expect(throws: DesaError(.checkFailed, "the certificate at \(url) is not for the key of the request")) {
            try ACMEClient.issued(chainPEM: chain, url: url, names: ["a.desa.test"], key: P256.Signing.PrivateKey())
        }
        #expect(throws: DesaError.self) {
            try ACMEClient.issued(chainPEM: "<html>oops</html>", url: url, names: ["a.desa.test"], key: key)
        }
    }

    static func bytes(hex: Substring) -> [UInt8] {
        var out: [UInt8] = [], chars = Array(hex.utf8)
        if chars.count % 2 == 1 { chars.insert(UInt8(ascii: "0"), at: 0) }
        var i = 0
        while i + 1 < chars.count {
            out.append(UInt8(String(decoding: chars[i...i + 1], as: UTF8.self), radix: 16) ?? 0)
            i += 2
        }
        return out
    }
}

/// A counter the fake server's handler shares across connections.
final class NIOLockedCounter: Sendable {
    private let box = NIOLockedValueBox((n: 0, bad: 0))
    func next() -> Int { box.withLockedValue { $0.n += 1; return $0.n } }
    var badNonces: Int { box.withLockedValue { $0.bad } }
    func badNonce() { box.withLockedValue { $0.bad += 1 } }
}
