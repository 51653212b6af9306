import Foundation
import GRDB

/// A release stored once under `apps.release_dir` (`app release add`), shared read-only by
/// every tenant that runs it.
public struct AppRelease: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "app_release"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }

    public var app: String
    /// As the release itself says (`VERSION` in OpenSID's `opensid_helper.php`): `2410.0.0`.
    public var version: String
    /// The database schema it migrates to (`VERSI_DATABASE`: `2024100101`).
    public var databaseVersion: String
    /// The PHP versions it declares (`minPhpVersion`, `maxPhpVersion`), when it does.
    public var phpMin: String?
    public var phpMax: String?
    /// SHA-256 of the tarball it came from, and that tarball's name.
    public var sha256: String
    public var source: String
    public var files: Int
    public var bytes: Int64
    public var addedAt: Date

    static let migration = StateMigration("apps-v1") { db in
        try db.create(table: "app_release") { t in
            t.column("app", .text).notNull()
            t.column("version", .text).notNull()
            t.column("databaseVersion", .text).notNull()
            t.column("phpMin", .text)
            t.column("phpMax", .text)
            t.column("sha256", .text).notNull()
            t.column("source", .text).notNull()
            t.column("files", .integer).notNull()
            t.column("bytes", .integer).notNull()
            t.column("addedAt", .text).notNull()
            t.primaryKey(["app", "version"])
        }
        try db.create(table: "tenant_app") { t in
            t.column("code", .text).primaryKey().references("tenant", onDelete: .cascade)
            t.column("app", .text).notNull()
            t.column("release", .text).notNull()
            t.column("state", .text).notNull()
            t.column("since", .text).notNull()
            t.column("previousRelease", .text)
            t.column("target", .text)
            t.column("error", .text)
        }
    }
}

/// Which release a tenant runs, and where its last change of release left it.
public struct TenantApp: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "tenant_app"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }

    public enum State: String, Codable, Sendable {
        /// Serving `release`.
        case ok
        /// Moving from `release` to `target`: an upgrade is under way, or was killed (`--resume`).
        case upgrading
        /// Its upgrade to `target` failed its gate; it serves `release` again, with its data.
        case rolledBack = "rolled-back"
        /// Neither the new release nor the rollback answered: it needs a person.
        case failed
    }

    public var code: String
    public var app: String
    public var release: String
    public var state: State
    public var since: Date
    public var previousRelease: String?
    public var target: String?
    public var error: String?

    static func byCode(_ db: Database) throws -> [String: TenantApp] {
        Dictionary(try TenantApp.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
    }
}
