import Logging

/// Answers dns-01 challenges through dynamic updates: `present` adds the TXT record at
/// `_acme-challenge.<domain>` and returns once the authoritative server answers it;
/// `cleanUp` deletes exactly that record (a failure is logged, not thrown).
public struct RFC2136Responder: DNS01Responder {
    public let client: DNSUpdateClient
    public let ttl: UInt32
    /// How long `present` waits for the server to answer the new record.
    public let propagationTimeout: Duration
    public let pollInterval: Duration
    let logger: Logger

    public init(client: DNSUpdateClient, ttl: UInt32 = 60, propagationTimeout: Duration = .seconds(30),
                pollInterval: Duration = .milliseconds(200), logger: Logger = Logger(label: "desa.dns")) {
        self.client = client
        self.ttl = ttl
        self.propagationTimeout = propagationTimeout
        self.pollInterval = pollInterval
        self.logger = logger
    }

    /// `_acme-challenge.<domain>`, the domain without a leading `*.`, validated.
    public static func challengeName(for domain: String) throws -> String {
        let base = domain.hasPrefix("*.") ? String(domain.dropFirst(2)) : domain
        let name = try DNSName.validate(base, what: "the domain")
        guard !name.split(separator: ".").contains(where: { $0.hasPrefix("_") }) else {
            throw DesaError.invalid("the domain \(Quote.show(domain)) has a label starting with '_'")
        }
        return "_acme-challenge." + name
    }

    /// An ACME key authorization digest: base64url without padding (43 characters for SHA-256).
    static func validateValue(_ value: String) throws {
        let ok = !value.isEmpty && value.utf8.count <= 255 && value.utf8.allSatisfy {
            ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95
        }
        guard ok else { throw DesaError.invalid("the dns-01 value \(Quote.show(value)) is not a base64url string") }
    }

    public func present(domain: String, txtValue: String) async throws {
        let name = try Self.challengeName(for: domain)
        try Self.validateValue(txtValue)
        let client = self.client, ttl = self.ttl
        try await BlockingThread.run("dns-update") { try client.addTXT(name: name, value: txtValue, ttl: ttl) }
        let deadline = ContinuousClock.now + propagationTimeout
        var last = "no answer yet"
        while true {
            do {
                let values = try await BlockingThread.run("dns-query") { try client.queryTXT(name: name) }
                if values.contains(txtValue) { return }
                last = values.isEmpty ? "no TXT record" : "only \(values.map { Quote.show($0) }.joined(separator: ", "))"
            } catch let e as DesaError {
                last = e.message
            }
            guard ContinuousClock.now < deadline else {
                throw DesaError.system("the TXT record at \(name) was added, but the DNS server \(client.server) did not answer it within \(DNSTransport.seconds(propagationTimeout)) (last answer: \(last))")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    public func cleanUp(domain: String, txtValue: String) async {
        do {
            let name = try Self.challengeName(for: domain)
            let client = self.client
            try await BlockingThread.run("dns-update") { try client.deleteTXT(name: name, value: txtValue) }
        } catch {
            logger.warning("could not delete the dns-01 TXT record of \(domain): \(error)")
        }
    }
}
