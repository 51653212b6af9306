import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// One certificate desa serves, as the state database records it. Each issuance gets a
/// directory of its own, `<certDir>/<id>/<serial>/` with `fullchain.pem` and `privkey.pem`
/// (0600, root's); the row names it once both files are in place, so a renewal switches
/// from one complete pair to the other (nginx reads the new path at its next reload).
public struct CertRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public enum Source: String, Codable, Sendable {
        /// An ACME bundle of tenants' names (`b001`), or a name retried alone.
        case acme
        /// The regency wildcard through DNS-01 (`wildcard`).
        case dns
        /// An operator's certificate (`import-<code>`, `import-regency`).
        case imported = "import"
        /// From the local CA, for staging (`self-<code>`).
        case selfSigned = "self-signed"
    }

    public static let databaseTableName = "certificate"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }

    public var id: String
    public var source: Source
    /// Tenant codes (a bundle's members, an import's tenant); empty for the wildcard.
    public var members: [String]
    /// The names the current certificate covers; empty before the first issuance.
    public var names: [String]
    public var notBefore: Date?
    public var notAfter: Date?
    public var serial: String?
    public var ariCertID: String?
    public var ariStart: Date?
    public var ariEnd: Date?
    public var issuedAt: Date?
    public var lastError: String?
    public var lastAttempt: Date?

    public init(id: String, source: Source, members: [String] = [], names: [String] = []) {
        self.id = id; self.source = source; self.members = members; self.names = names
    }

    public var hasCertificate: Bool { notAfter != nil && !names.isEmpty }

    /// Present and within its dates at `now`.
    public func isValid(at now: Date) -> Bool {
        guard let nb = notBefore, let na = notAfter, hasCertificate else { return false }
        return nb <= now && now < na
    }

    public var ariWindow: RenewalWindow? {
        guard let s = ariStart, let e = ariEnd else { return nil }
        return RenewalWindow(start: s, end: e)
    }

    public func directory(_ c: Config) -> String { c.certDir + "/" + id + "/" + (serial ?? "none") }
    public func chainPath(_ c: Config) -> String { directory(c) + "/fullchain.pem" }
    public func keyPath(_ c: Config) -> String { directory(c) + "/privkey.pem" }

    /// Whether `name` is covered: exactly, or by a wildcard one label up.
    public func covers(_ name: String) -> Bool {
        CertRecord.covers(names, name)
    }

    public static func covers(_ names: [String], _ name: String) -> Bool {
        let n = name.lowercased()
        for c in names {
            let c = c.lowercased()
            if c == n { return true }
            if c.hasPrefix("*."), let dot = n.firstIndex(of: "."), n[n.index(after: dot)...] == c.dropFirst(2) { return true }
        }
        return false
    }
}

/// A name taken out of its bundle because the CA could not validate it; retried alone.
public struct HeldOutName: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "cert_held_out"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }
    public var name: String
    public var code: String
    public var reason: String
    public var failures: Int
    public var lastFailure: Date
}

/// A ledger row: what the CA's rate limits count.
struct LedgerRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "cert_ledger"
    static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }
    var id: Int64?
    var time: Date
    var kind: String
    var names: String
    var renewalWithARI: Bool

    init(_ e: LedgerEvent) throws {
        let data = try JSONEncoder().encode(e)
        let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        id = nil
        time = e.time
        kind = obj["kind"] as? String ?? ""
        names = String(decoding: try JSONSerialization.data(withJSONObject: obj["names"] ?? []), as: UTF8.self)
        renewalWithARI = obj["renewalWithARI"] as? Bool ?? false
    }

    var event: LedgerEvent? {
        let obj: [String: Any] = ["time": time.timeIntervalSinceReferenceDate, "kind": kind,
                                  "names": (try? JSONSerialization.jsonObject(with: Data(names.utf8))) ?? [],
                                  "renewalWithARI": renewalWithARI]
        guard let data = try? JSONSerialization.data(withJSONObject: obj) else { return nil }
        return try? JSONDecoder().decode(LedgerEvent.self, from: data)
    }
}

/// What nginx serves a tenant over HTTPS: each certificate and the tenant's names it covers.
public struct TLSServe: Sendable, Equatable {
    public var certificate: String
    public var key: String
    public var names: [String]
}

/// The certificates on disk and in the state database.
public enum CertStore {
    static let migration = StateMigration("v3-certificates") { db in
        try db.create(table: "certificate") { t in
            t.column("id", .text).primaryKey()
            t.column("source", .text).notNull()
            t.column("members", .text).notNull()
            t.column("names", .text).notNull()
            t.column("notBefore", .text)
            t.column("notAfter", .text)
            t.column("serial", .text)
            t.column("ariCertID", .text)
            t.column("ariStart", .text)
            t.column("ariEnd", .text)
            t.column("issuedAt", .text)
            t.column("lastError", .text)
            t.column("lastAttempt", .text)
        }
        try db.create(table: "cert_held_out") { t in
            t.column("name", .text).primaryKey()
            t.column("code", .text).notNull()
            t.column("reason", .text).notNull()
            t.column("failures", .integer).notNull()
            t.column("lastFailure", .text).notNull()
        }
        try db.create(table: "cert_ledger") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("time", .text).notNull()
            t.column("kind", .text).notNull()
            t.column("names", .text).notNull()
            t.column("renewalWithARI", .boolean).notNull()
        }
    }

    public static func records(_ db: Database) throws -> [CertRecord] {
        try CertRecord.order(Column("id")).fetchAll(db)
    }

    /// The ledger's events; one dated after `now` (the clock was set back) counts as now,
    /// or it would hold every order for as long as the clock was ahead.
    static func ledger(_ db: Database, now: Date) throws -> [LedgerEvent] {
        try LedgerRow.fetchAll(db).compactMap(\.event).map { $0.time > now ? LedgerEvent(time: now, kind: $0.kind) : $0 }
    }

    static func record(_ db: Database, _ events: [LedgerEvent]) throws {
        for e in events { try LedgerRow(e).insert(db) }
    }

    /// For each tenant, the valid certificates covering its names, the most specific
    /// first: an import for the tenant, then its bundle or retried name, then the
    /// regency's (imported or DNS-01 wildcard). Files must be present.
    public static func serving(_ records: [CertRecord], tenants: [Tenant], aliases: [String: [String]], config: Config, now: Date,
                               fileExists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) }) -> [String: [TLSServe]] {
        let valid = valid(records, config: config, now: now, fileExists: fileExists)
        var out: [String: [TLSServe]] = [:]
        for t in tenants where t.desired != .deleted {
            let serves = serving(valid, member: t.code, names: [t.primaryDomain(config)] + (aliases[t.code] ?? []), config: config)
            if !serves.isEmpty { out[t.code] = serves }
        }
        return out
    }

    /// What serves `names` of one member of the bundles (a tenant's code, or `portal`):
    /// among `valid` certificates, the most specific first.
    public static func serving(_ valid: [CertRecord], member: String, names: [String], config: Config) -> [TLSServe] {
        func rank(_ r: CertRecord) -> Int {
            switch r.source {
            case .imported where r.members.contains(member), .selfSigned where r.members.contains(member): return 0
            case .acme where r.members.contains(member): return 1
            case .acme: return 2
            case .imported, .selfSigned, .dns: return 3
            }
        }
        var left = names
        var serves: [TLSServe] = []
        let candidates = valid.filter { r in
            (r.members.isEmpty || r.members.contains(member)) && names.contains { r.covers($0) }
        }.sorted { (rank($0), $0.id) < (rank($1), $1.id) }
        for r in candidates {
            let covered = left.filter { r.covers($0) }
            guard !covered.isEmpty else { continue }
            serves.append(TLSServe(certificate: r.chainPath(config), key: r.keyPath(config), names: covered))
            left.removeAll { covered.contains($0) }
        }
        return serves
    }

    /// The certificates that may serve now: valid, their files present.
    public static func valid(_ records: [CertRecord], config: Config, now: Date,
                             fileExists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) }) -> [CertRecord] {
        records.filter { $0.isValid(at: now) && fileExists($0.chainPath(config)) && fileExists($0.keyPath(config)) }
    }

    /// Puts a certificate's chain and key in their own new directory (key 0600, both
    /// root's, synced), then records it: the old pair serves until then. Older pairs of
    /// the same certificate are removed, but the one before (nginx may still use it).
    public static func install(_ record: CertRecord, chainPEM: String, keyPEM: String, config: Config, store: StateStore) throws {
        guard let serial = record.serial, !serial.isEmpty, serial.allSatisfy({ $0.isHexDigit }),
              record.id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) else {
            throw DesaError.system("certificate \(record.id) has no usable serial")
        }
        let base = config.certDir + "/" + record.id, dir = base + "/" + serial
        for d in [config.certDir, base, dir] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            chmod(d, 0o700)
        }
        try AtomicFiles.write([
            FileWrite(path: dir + "/privkey.pem", content: keyPEM, mode: 0o600, owner: 0, group: 0),
            FileWrite(path: dir + "/fullchain.pem", content: chainPEM, mode: 0o600, owner: 0, group: 0),
        ])
        let previous = try store.queue.write { db -> String? in
            let old = try CertRecord.fetchOne(db, key: record.id)?.serial
            try record.save(db)
            return old
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where entry != serial && entry != previous {
            try? FileManager.default.removeItem(atPath: base + "/" + entry)
        }
    }
}
