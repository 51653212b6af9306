import Foundation
import GRDB

/// A village hosted on this server, as the state database records it.
/// `desired` is what the operator asked for; `status` is what the last apply achieved.
public struct Tenant: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public enum Desired: String, Codable, Sendable { case active, suspended, deleted }
    public enum Status: String, Codable, Sendable, CaseIterable { case pending, active, suspended, failed, deleted }

    public static let databaseTableName = "tenant"

    public var code: String
    public var slug: String
    public var name: String
    public var districtCode: String
    public var districtName: String
    public var kind: VillageKind
    public var template: String
    public var php: String
    public var uid: Int
    public var desired: Desired
    public var purge: Bool
    public var status: Status
    public var reason: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(village: Village, slug: String, template: String, php: String, uid: Int, now: Date) {
        code = village.code.value
        self.slug = slug
        name = village.name
        districtCode = village.code.district
        districtName = village.district
        kind = village.code.kind
        self.template = template
        self.php = php
        self.uid = uid
        desired = .active
        purge = false
        status = .pending
        reason = nil
        createdAt = now
        updatedAt = now
    }

    /// Decodes a row by column position: `tenant list` reads 10,000 rows, and the
    /// Codable path costs about 13 µs a row.
    public init(row: Row) throws {
        code = row[0]; slug = row[1]; name = row[2]; districtCode = row[3]; districtName = row[4]
        let kindRaw: String = row[5], desiredRaw: String = row[9], statusRaw: String = row[11]
        guard let k = VillageKind(rawValue: kindRaw), let d = Desired(rawValue: desiredRaw), let st = Status(rawValue: statusRaw) else {
            throw DesaError.system("the state database holds an unknown kind, desired state or status for \(code)")
        }
        kind = k; desired = d; status = st
        template = row[6]; php = row[7]; uid = row[8]; purge = row[10]; reason = row[12]
        createdAt = Timestamp.parse(row[13]) ?? Date(timeIntervalSince1970: 0)
        updatedAt = Timestamp.parse(row[14]) ?? Date(timeIntervalSince1970: 0)
    }

    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }

    public static var databaseSelection: [any SQLSelectable] { [
        Column("code"), Column("slug"), Column("name"), Column("districtCode"), Column("districtName"), Column("kind"),
        Column("template"), Column("php"), Column("uid"), Column("desired"), Column("purge"), Column("status"),
        Column("reason"), Column("createdAt"), Column("updatedAt"),
    ] }

    public var villageCode: VillageCode { try! VillageCode(code) }

    /// The Linux user (and group) the tenant's PHP runs as: prefix + the code's ten digits.
    public func userName(prefix: String) -> String { prefix + code.filter(\.isNumber) }

    public func primaryDomain(_ config: Config) -> String { slug + "." + config.domain }
    public func home(_ config: Config) -> String { config.webRoot + "/" + slug }
    /// The tenant's log directory outside its home (nginx and php-fpm logs).
    public func logDir(_ config: Config) -> String { config.tenantLogRoot + "/" + slug }
    /// The socket of the tenant's PHP-FPM pool.
    public func phpSocket(_ config: Config) throws -> String {
        try config.phpPool(php).socketDir + "/" + userName(prefix: config.userPrefix) + ".sock"
    }

    /// Whether `user` is the one desa made for this tenant (its UID and home): only that
    /// user is ever changed or deleted.
    public func isOwnUser(_ user: SystemUser?, _ config: Config) -> Bool {
        user.map { $0.uid == uid && $0.home == home(config) } ?? false
    }

    /// Where a deleted tenant's home goes in the archive (and what else is archived with
    /// it, such as its database's dump, starts with): `<archive_dir>/<slug>-<code digits>-<UTC time>`.
    public func archivePath(_ config: Config, at time: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return config.archiveDir + "/" + slug + "-" + code.filter(\.isNumber) + "-" + f.string(from: time)
    }

    /// What `status` should become once apply has carried out `desired`.
    public var convergedStatus: Status {
        switch desired {
        case .active: return .active
        case .suspended: return .suspended
        case .deleted: return .deleted
        }
    }
}

public struct Alias: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "alias"
    public var domain: String
    public var code: String
}

/// One row per mutating command: who, what, when, and how it ended.
public struct AuditEntry: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "audit"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }
    public var id: Int64?
    public var at: Date
    public var actor: String
    public var op: String
    public var target: String
    public var outcome: String
    public var detail: String
}
