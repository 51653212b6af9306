import Foundation
import GRDB
import GRDBSQLite

/// A tenant as `tenant list` and `tenant show` present it. Its JSON form is the
/// documented, stable output of `--json`.
public struct TenantView: Sendable {
    public var tenant: Tenant
    public var aliases: [String]
    public var domain: String
    public var user: String
    public var home: String

    public init(tenant: Tenant, aliases: [String], config: Config) {
        self.tenant = tenant
        self.aliases = aliases
        domain = tenant.primaryDomain(config)
        user = tenant.userName(prefix: config.userPrefix)
        home = tenant.home(config)
    }

    /// The columns `writeJSON` reads, in this order.
    static let jsonColumns = "code, slug, name, kind, districtName, districtCode, status, desired, reason, template, php, uid, createdAt, updatedAt"

    static let keys: [[UInt8]] = ["code", "slug", "name", "kind", "district", "district_code", "domain", "aliases", "status",
                                  "desired", "reason", "template", "php", "user", "uid", "home", "created_at", "updated_at"]
        .enumerated().map { i, k in Array(((i == 0 ? "{" : ",") + "\"\(k)\":").utf8) }

    /// Writes the documented JSON object of every row `statement` yields (it selects
    /// `jsonColumns`), comma-separated, straight from SQLite's row buffers: `tenant list
    /// --json` over 10,000 tenants has to finish in under 100 ms, process start included.
    static func writeJSON(rows statement: Statement, aliases: [String: [String]], config: Config, into out: inout [UInt8]) throws -> Int {
        let h = statement.sqliteStatement
        defer { sqlite3_reset(h) }
        let domain = Array(("." + config.domain).utf8), home = Array((config.webRoot + "/").utf8)
        let prefix = Array(config.userPrefix.utf8)
        func text(_ i: Int32) -> UnsafeBufferPointer<UInt8> {
            guard let p = sqlite3_column_text(h, i) else { return UnsafeBufferPointer(start: nil, count: 0) }
            return UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(h, i)))
        }
        func string(_ i: Int32, _ out: inout [UInt8]) {
            if sqlite3_column_type(h, i) == SQLITE_NULL { out.append(contentsOf: "null".utf8) } else { JSON.escape(bytes: text(i), into: &out) }
        }
        var n = 0
        while true {
            let rc = sqlite3_step(h)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw DesaError.system("reading the state database: \(String(cString: sqlite3_errmsg(sqlite3_db_handle(h))))")
            }
            if n > 0 { out.append(UInt8(ascii: ",")) }
            n += 1
            let code = text(0), slug = text(1)
            out.append(contentsOf: keys[0]); JSON.escape(bytes: code, into: &out)
            out.append(contentsOf: keys[1]); JSON.escape(bytes: slug, into: &out)
            for (k, col) in [(2, 2), (3, 3), (4, 4), (5, 5)] as [(Int, Int32)] { out.append(contentsOf: keys[k]); string(col, &out) }
            out.append(contentsOf: keys[6]); out.append(34); out.append(contentsOf: slug); out.append(contentsOf: domain); out.append(34)
            out.append(contentsOf: keys[7]); out.append(UInt8(ascii: "["))
            if let list = aliases[String(decoding: code, as: UTF8.self)] {
                for (i, a) in list.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    JSON.escape(a, into: &out)
                }
            }
            out.append(UInt8(ascii: "]"))
            for (k, col) in [(8, 6), (9, 7), (10, 8), (11, 9), (12, 10)] as [(Int, Int32)] { out.append(contentsOf: keys[k]); string(col, &out) }
            out.append(contentsOf: keys[13]); out.append(34); out.append(contentsOf: prefix)
            for b in code where b != UInt8(ascii: ".") { out.append(b) }
            out.append(34)
            out.append(contentsOf: keys[14]); out.append(contentsOf: String(sqlite3_column_int64(h, 11)).utf8)
            out.append(contentsOf: keys[15]); out.append(34); out.append(contentsOf: home); out.append(contentsOf: slug); out.append(34)
            out.append(contentsOf: keys[16]); string(12, &out)
            out.append(contentsOf: keys[17]); string(13, &out)
            out.append(UInt8(ascii: "}"))
        }
        return n
    }
}
