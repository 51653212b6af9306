import Foundation
import Testing
@testable import Provisioner

/// A regency's own CA for `cert import` tests, made with the real `openssl` (argument
/// vectors, no shell): a root, an intermediate it signs, and leaves the intermediate signs
/// with any names and dates (`openssl ca`, which, unlike `openssl x509` 3.0, takes both
/// dates, so an expired leaf is a real one). Every key is P-256.
final class LocalPKI {
    struct Pair {
        var cert: String
        var key: String
    }

    let dir: String
    let runner = SystemProcessRunner()
    private(set) var root = Pair(cert: "", key: "")
    private(set) var intermediate = Pair(cert: "", key: "")
    private var count = 0

    /// Creates the root and the intermediate under `dir` (which must not exist yet).
    init(dir: String, now: Date = Date()) throws {
        self.dir = dir
        try FileManager.default.createDirectory(atPath: dir + "/issued", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try AtomicFiles.write([FileWrite(path: dir + "/index.txt", content: ""), FileWrite(path: dir + "/serial", content: "1000\n")])
        root = Pair(cert: dir + "/root.pem", key: dir + "/root.key")
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", root.key, "-out", root.cert,
                     "-days", "30", "-subj", "/CN=Diskominfo Test Root", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        intermediate = try sign(commonName: "Diskominfo Test Intermediate", names: nil, by: root,
                                from: now.addingTimeInterval(-86400), to: now.addingTimeInterval(20 * 86400))
    }

    /// A new key and a certificate for `names` signed by `issuer` (the intermediate by
    /// default), valid `from`…`to`. `names: nil` makes a CA certificate.
    func sign(commonName: String, names: [String]?, by issuer: Pair? = nil, from: Date, to: Date) throws -> Pair {
        count += 1
        let base = dir + "/c\(count)"
        let out = Pair(cert: base + ".pem", key: base + ".key")
        let ext: String
        if let names {
            ext = """
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = \(names.map { "DNS:" + $0 }.joined(separator: ","))
            """
        } else {
            ext = "basicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign"
        }
        let config = """
        [ ca ]
        default_ca = local
        [ local ]
        database = \(dir)/index.txt
        new_certs_dir = \(dir)/issued
        serial = \(dir)/serial
        default_md = sha256
        policy = anything
        unique_subject = no
        copy_extensions = none
        [ anything ]
        commonName = supplied
        [ wanted ]
        \(ext)

        """
        try AtomicFiles.write([FileWrite(path: base + ".cnf", content: config, mode: 0o600)])
        try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", out.key,
                     "-out", base + ".csr", "-subj", "/CN=" + commonName])
        let issuer = issuer ?? intermediate
        try openssl(["ca", "-batch", "-config", base + ".cnf", "-cert", issuer.cert, "-keyfile", issuer.key, "-in", base + ".csr",
                     "-out", out.cert, "-startdate", Self.asn1(from), "-enddate", Self.asn1(to), "-extensions", "wanted", "-notext"])
        return out
    }

    /// A file holding these certificates, in order (a leaf, then its chain).
    func bundle(_ name: String, _ parts: [String]) throws -> String {
        let path = dir + "/" + name
        try AtomicFiles.write([FileWrite(path: path, content: parts.map { AtomicFiles.read($0) ?? "" }.joined(), mode: 0o600)])
        return path
    }

    private func openssl(_ args: [String]) throws {
        let r = try runner.run(["/usr/bin/openssl"] + args)
        try #require(r.ok, "openssl \(args.prefix(2).joined(separator: " ")) failed: \(r.message)")
    }

    /// `20250101000000Z`, as `openssl ca -startdate` wants it.
    static func asn1(_ d: Date) -> String {
        Timestamp.format(d).filter { $0.isNumber } + "Z"
    }
}
