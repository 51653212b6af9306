import Crypto
import Foundation
import GRDB
import X509

/// What `cert import` did.
public struct CertImportReport: Sendable {
    public var id: String
    public var names: [String]
    public var notAfter: Date
    /// The tenant's names the certificate does not cover (they stay on plain HTTP).
    public var uncovered: [String]
    public var change: ChangeReport?

    public var summary: String {
        "imported \(id): \(names.joined(separator: " ")), valid until \(Timestamp.format(notAfter))"
            + (uncovered.isEmpty ? "" : "; not covered (plain HTTP): \(uncovered.joined(separator: " "))")
    }

    public var json: JSON {
        .object([("id", .string(id)), ("names", .array(names.map { .string($0) })), ("not_after", .string(Timestamp.format(notAfter))),
                 ("uncovered", .array(uncovered.map { .string($0) }))])
    }
}

/// Checks of an operator's certificate and key before anything is written.
public enum CertificateCheck {
    public struct Checked: Sendable {
        public var chainPEM: String
        public var keyPEM: String
        public var names: [String]
        public var notBefore: Date
        public var notAfter: Date
        public var serial: String
    }

    /// The key matches the leaf, the chain is complete up to a trusted root (the system's,
    /// or `trustedRoots`), the leaf is within its dates at `now`, and it covers `mustCover`.
    public static func check(chainPEM: String, keyPEM: String, mustCover: [String], trustedRoots: [String], now: Date,
                             runner: ProcessRunning) throws -> Checked {
        let chain: [Certificate]
        do { chain = try ACMECertificates.parseChain(chainPEM) } catch {
            throw DesaError.invalid("the certificate file holds no readable PEM certificate (\(error))")
        }
        guard let leaf = chain.first else { throw DesaError.invalid("the certificate file holds no certificate") }
        let key: Certificate.PrivateKey
        do { key = try Certificate.PrivateKey(pemEncoded: keyPEM) } catch {
            throw DesaError.invalid("the key file holds no private key desa can read (PEM: EC P-256/P-384 or RSA): \(error)")
        }
        guard key.publicKey == leaf.publicKey else {
            throw DesaError.invalid("the key does not match the certificate (its public key is another)")
        }
        guard leaf.notValidBefore <= now else {
            throw DesaError.invalid("the certificate is not valid yet (not before \(Timestamp.format(leaf.notValidBefore)))")
        }
        guard now < leaf.notValidAfter else {
            throw DesaError.invalid("the certificate expired on \(Timestamp.format(leaf.notValidAfter))")
        }
        let names = try ACMECertificates.dnsNames(leaf)
        let missing = mustCover.filter { !CertRecord.covers(names, $0) }
        guard missing.isEmpty else {
            throw DesaError.invalid("the certificate does not cover \(missing.joined(separator: ", ")) (it names \(names.joined(separator: ", ")))")
        }
        try verifyChain(chain, trustedRoots: trustedRoots, runner: runner)
        let pem = try chain.map { try ACMECertificates.pem($0) }.joined()
        return Checked(chainPEM: pem, keyPEM: keyPEM.hasSuffix("\n") ? keyPEM : keyPEM + "\n", names: names,
                       notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter, serial: ACMECertificates.serialHex(leaf))
    }

    /// `openssl verify` of the leaf with the rest of the file as intermediates, against the
    /// system's roots and `trustedRoots`: an incomplete chain is refused here, not by browsers.
    static func verifyChain(_ chain: [Certificate], trustedRoots: [String], runner: ProcessRunning) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("desa-verify-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var roots = AtomicFiles.read("/etc/ssl/certs/ca-certificates.crt") ?? ""
        for r in trustedRoots { roots += "\n" + (AtomicFiles.read(r) ?? "") }
        try AtomicFiles.write([
            FileWrite(path: dir + "/roots.pem", content: roots, mode: 0o600),
            FileWrite(path: dir + "/leaf.pem", content: try ACMECertificates.pem(chain[0]), mode: 0o600),
            FileWrite(path: dir + "/rest.pem", content: try chain.dropFirst().map { try ACMECertificates.pem($0) }.joined(), mode: 0o600),
        ])
        var argv = ["/usr/bin/openssl", "verify", "-CAfile", dir + "/roots.pem"]
        if chain.count > 1 { argv += ["-untrusted", dir + "/rest.pem"] }
        let r = try runner.run(argv + [dir + "/leaf.pem"])
        guard r.ok else {
            let why = r.message.split(separator: "\n").first { $0.contains("error") }.map(String.init) ?? r.message
            throw DesaError.invalid("the chain does not lead to a trusted root (is an intermediate missing from the file?): \(why)")
        }
    }
}

extension Engine {
    /// `cert import`: an operator's certificate for one tenant (`tenant`), or for the
    /// regency domain (nil: a wildcard), checked before anything is written; then HTTPS
    /// is rendered with it.
    public func importCertificate(tenant key: String?, certificate: String, key keyFile: String, dryRun: Bool = false) throws -> CertImportReport {
        try requireTLS()
        guard let chainPEM = AtomicFiles.read(certificate) else { throw DesaError.invalid("cannot read the certificate file \(certificate)") }
        guard let keyPEM = AtomicFiles.read(keyFile) else { throw DesaError.invalid("cannot read the key file \(keyFile)") }
        var id = "import-regency", members: [String] = [], mustCover = ["x." + config.domain], tenantNames: [String] = []
        if let key {
            let view = try show(key)
            id = "import-" + view.tenant.code.filter(\.isNumber)
            members = [view.tenant.code]
            tenantNames = [view.tenant.primaryDomain(config)] + view.aliases
            mustCover = [view.tenant.primaryDomain(config)]
        }
        let checked: CertificateCheck.Checked
        do {
            checked = try CertificateCheck.check(chainPEM: chainPEM, keyPEM: keyPEM, mustCover: mustCover, trustedRoots: config.tls.trustedRoots,
                                                 now: now(), runner: runner)
        } catch let e as DesaError {
            if !dryRun { record(op: "cert-import", target: key ?? "regency", outcome: "rejected", detail: e.message) }
            throw e
        }
        var report = CertImportReport(id: id, names: checked.names, notAfter: checked.notAfter,
                                      uncovered: tenantNames.filter { !CertRecord.covers(checked.names, $0) })
        if dryRun { return report }
        var r = CertRecord(id: id, source: .imported, members: members, names: checked.names)
        r.notBefore = checked.notBefore; r.notAfter = checked.notAfter; r.serial = checked.serial; r.issuedAt = now()
        try CertStore.install(r, chainPEM: checked.chainPEM, keyPEM: checked.keyPEM, config: config, store: store)
        record(op: "cert-import", target: id, outcome: "ok", detail: "\(checked.names.count) names, not after \(Timestamp.format(checked.notAfter))")
        journal.send(["MESSAGE": "certificate \(id) imported: \(checked.names.joined(separator: " ")), valid until \(Timestamp.format(checked.notAfter))",
                      "DESA_OP": "cert-import", "DESA_CERT": id, "DESA_TENANT": members.first ?? "", "DESA_CERT_NOT_AFTER": Timestamp.format(checked.notAfter),
                      "PRIORITY": "\(JournalPriority.notice.rawValue)"])
        report.change = try apply()
        return report
    }

    /// The DNS-01 responder `[tls] dns` asks for, or nil.
    public func dnsResponder() throws -> (any DNS01Responder)? {
        guard config.tls.dns == .rfc2136, let keyFile = config.tls.tsigKeyFile else { return nil }
        return RFC2136Responder(client: try DNSUpdateClient(server: config.tls.dnsServer, key: try TSIGKey.load(path: keyFile), zone: config.domain))
    }
}
