import CMariaDB
import Foundation

/// Where a MariaDB server listens: a Unix socket, or a TCP address on this host.
public enum MariaDBAddress: Sendable, Equatable, CustomStringConvertible {
    case socket(String)
    case tcp(host: String, port: Int)

    public var description: String {
        switch self {
        case .socket(let p): return p
        case .tcp(let h, let p): return "\(h):\(p)"
        }
    }
}

/// One connection to MariaDB through its C client library (libmariadb). Statements are
/// text built by `SQL` (identifiers quoted, values escaped by a strict grammar); nothing
/// else reaches the server. Not thread-safe: one connection per thread.
public final class MariaDBConnection {
    private let handle: UnsafeMutablePointer<MYSQL>
    public let address: MariaDBAddress
    public let user: String

    /// Connects as `user` (with `password`, or the server's unix-socket authentication
    /// when nil). Errors name the server and never the password.
    public init(address: MariaDBAddress, user: String, password: String?, database: String? = nil,
                timeout: UInt32 = 5, readTimeout: UInt32? = nil) throws {
        guard let h = mysql_init(nil) else { throw DesaError.system("MariaDB: out of memory") }
        var t = timeout
        mysql_options(h, MYSQL_OPT_CONNECT_TIMEOUT, &t)
        var rw = readTimeout ?? max(timeout, 30)
        mysql_options(h, MYSQL_OPT_READ_TIMEOUT, &rw)
        mysql_options(h, MYSQL_OPT_WRITE_TIMEOUT, &rw)
        // Never read ~/.my.cnf or /etc/mysql: only what the config says.
        var no: my_bool = 0
        mysql_options(h, MYSQL_OPT_LOCAL_INFILE, &no)
        "utf8mb4".withCString { _ = mysql_options(h, MYSQL_SET_CHARSET_NAME, $0) }
        let ok: Bool
        switch address {
        case .socket(let path):
            ok = mysql_real_connect(h, "localhost", user, password, database, 0, path, 0) != nil
        case .tcp(let host, let port):
            var proto = MYSQL_PROTOCOL_TCP.rawValue
            mysql_options(h, MYSQL_OPT_PROTOCOL, &proto)
            ok = mysql_real_connect(h, host, user, password, database, UInt32(port), nil, 0) != nil
        }
        guard ok else {
            let message = String(cString: mysql_error(h))
            let code = mysql_errno(h)
            mysql_close(h)
            throw DesaError(.system, "cannot connect to MariaDB at \(address) as \(user): \(message) (error \(code))")
        }
        handle = h
        self.address = address
        self.user = user
        // `SQL.literal` escapes with backslashes: make sure the session reads them so.
        try execute(SQL("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')"))
    }

    deinit { mysql_close(handle) }

    /// Runs statements that return no rows.
    public func execute(_ statements: SQL...) throws {
        for s in statements { _ = try run(s) }
    }

    /// Runs a query and returns its rows; NULL is nil.
    public func query(_ statement: SQL) throws -> [[String?]] {
        try run(statement)
    }

    /// The first column of the first row, if any.
    public func scalar(_ statement: SQL) throws -> String? {
        try query(statement).first?.first ?? nil
    }

    private func run(_ statement: SQL) throws -> [[String?]] {
        let bytes = Array(statement.text.utf8)
        let rc = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                mysql_real_query(handle, $0, UInt(bytes.count))
            }
        }
        guard rc == 0 else { throw error(statement) }
        guard let result = mysql_store_result(handle) else {
            if mysql_field_count(handle) != 0 { throw error(statement) }
            return []
        }
        defer { mysql_free_result(result) }
        let columns = Int(mysql_num_fields(result))
        var rows: [[String?]] = []
        while let row = mysql_fetch_row(result) {
            let lengths = mysql_fetch_lengths(result)
            var out: [String?] = []
            out.reserveCapacity(columns)
            for i in 0..<columns {
                guard let cell = row[i] else { out.append(nil); continue }
                let n = Int(lengths?[i] ?? 0)
                out.append(cell.withMemoryRebound(to: UInt8.self, capacity: n) {
                    String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
                })
            }
            rows.append(out)
        }
        return rows
    }

    /// The server's error for a statement, naming what was being done (`statement.what`),
    /// never the statement's text: it may carry a password.
    private func error(_ statement: SQL) -> DesaError {
        DesaError(.system, "MariaDB at \(address): \(statement.what): \(String(cString: mysql_error(handle))) (error \(mysql_errno(handle)))")
    }
}

/// A statement for MariaDB, built only from literal text, quoted identifiers and escaped
/// values. `what` describes it for errors (the text itself may hold a secret).
public struct SQL: Sendable, Equatable {
    public var text: String
    public var what: String

    public init(_ text: String, what: String? = nil) {
        self.text = text
        self.what = what ?? text
    }

    /// An identifier (database, user, table) in backquotes, a backquote inside doubled.
    /// NUL and text longer than `limit` characters are refused.
    public static func identifier(_ name: String, limit: Int = 64) throws -> String {
        guard !name.isEmpty, name.count <= limit, !name.unicodeScalars.contains(where: { $0.value == 0 }) else {
            throw DesaError.invalid("\(Quote.show(name)) cannot be a MariaDB identifier (1 to \(limit) characters, no NUL)")
        }
        return "`" + name.replacingOccurrences(of: "`", with: "``") + "`"
    }

    /// A database name as a GRANT pattern: quoted, with `_` and `%` escaped so that they
    /// match themselves (unescaped, `desa_1` would also grant `desaX1`).
    public static func grantDatabase(_ name: String) throws -> String {
        try identifier(grantPattern(name), limit: 128)
    }

    /// The name with `\`, `_` and `%` escaped: how `mysql.db` stores the database of a grant
    /// made with `grantDatabase`.
    static func grantPattern(_ name: String) -> String {
        var out = ""
        for ch in name {
            if ch == "\\" || ch == "_" || ch == "%" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    /// The database a `grantPattern` names (escapes taken out).
    static func unescapeGrantPattern(_ pattern: String) -> String {
        var out = "", escaped = false
        for ch in pattern {
            if ch == "\\" && !escaped { escaped = true; continue }
            escaped = false
            out.append(ch)
        }
        return out
    }

    /// A string value in single quotes. Backslash, quote, NUL, newlines and ^Z are
    /// escaped, the set MariaDB's own `mysql_real_escape_string` escapes.
    public static func literal(_ value: String) -> String {
        var out = "'"
        for u in value.unicodeScalars {
            switch u {
            case "\0": out += "\\0"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\\": out += "\\\\"
            case "'": out += "\\'"
            case "\"": out += "\\\""
            case "\u{1A}": out += "\\Z"
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "'"
    }

    /// `'user'@'host'`.
    public static func account(_ user: String, _ host: String) -> String {
        literal(user) + "@" + literal(host)
    }
}
