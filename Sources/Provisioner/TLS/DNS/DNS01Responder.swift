/// Publishes and removes the TXT record of an ACME dns-01 challenge (RFC 8555 §8.4).
public protocol DNS01Responder: Sendable {
    func present(domain: String, txtValue: String) async throws   // record at _acme-challenge.<domain> (domain without "*.")
    func cleanUp(domain: String, txtValue: String) async
}
