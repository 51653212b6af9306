import TOMLKit

/// A `Decoder` over a parsed TOML table that refuses what it does not understand: a key
/// no type asked for is an error naming it (with the nearest known key), a value of the
/// wrong type is an error naming the key and both types. TOMLKit's own decoder reports a
/// wrong type as a missing key and ignores unknown keys, which is how a misspelt
/// `sites_dri` once sent a sandbox at the host's nginx.
///
/// Errors are `ConfigDecodingError`s whose message starts with the dotted key.
struct StrictTOMLDecoder {
    /// The top-level names that are tables of their own; an unknown top-level table is an
    /// "unknown section" and the suggestion comes from these.
    var sectionNames: [String] = []

    func decode<T: Decodable>(_ type: T.Type, from table: TOMLTable) throws -> T {
        let log = VisitLog()
        let value = try T(from: TOMLValueDecoder(value: table, codingPath: [], log: log))
        try log.checkUnknownKeys(sectionNames: sectionNames)
        return value
    }
}

/// An error in a config file; `message` names the key (`nginx.sites_dri`), not the file.
struct ConfigDecodingError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A `CodingKey` for any name: section names, PHP versions.
public struct ConfigKey: CodingKey, Hashable, Sendable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ s: String) { stringValue = s }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { return nil }
}

enum ConfigKeyPath {
    /// `php.versions."8.2".binary`: components that are not bare TOML keys are quoted.
    static func dotted(_ path: [CodingKey]) -> String {
        path.map { k in
            if let i = k.intValue { return "[\(i)]" }
            let s = k.stringValue
            let bare = !s.isEmpty && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
            return bare ? s : TOMLWriter.quoted(s)
        }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    static func typeName(_ v: TOMLValueConvertible) -> String {
        switch v.type {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a number with a fraction"
        case .bool: return "a boolean"
        case .date, .time, .dateTime: return "a date or time"
        }
    }

    /// Levenshtein distance, for "did you mean".
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased()), b = Array(b.lowercased())
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var prev = row[0]
            row[0] = i
            for j in 1...b.count {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[b.count]
    }

    /// The closest candidate, if it is close enough to be a likely typo.
    static func suggestion(for name: String, among candidates: [String]) -> String? {
        let best = candidates.map { ($0, distance(name, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        guard let (c, d) = best, d <= max(2, min(name.count, c.count) / 3) else { return nil }
        return c
    }
}

/// Every table a keyed container looked at, with the keys it asked about. What a table
/// holds beyond those keys is unknown.
final class VisitLog {
    final class Visit {
        let path: [CodingKey]
        let table: TOMLTable
        var asked: Set<String> = []
        init(path: [CodingKey], table: TOMLTable) { self.path = path; self.table = table }
    }
    private var visits: [Visit] = []

    func visit(_ table: TOMLTable, at path: [CodingKey]) -> Visit {
        let v = Visit(path: path, table: table)
        visits.append(v)
        return v
    }

    func checkUnknownKeys(sectionNames: [String]) throws {
        // Several containers may read one table (a type that decodes in two steps).
        var asked: [String: Set<String>] = [:]
        var first: [String: Visit] = [:]
        var order: [String] = []
        for v in visits {
            let id = ConfigKeyPath.dotted(v.path)
            if first[id] == nil { first[id] = v; order.append(id) }
            asked[id, default: []].formUnion(v.asked)
        }
        for id in order {
            let v = first[id]!, known = asked[id]!
            for key in v.table.keys.sorted() where !known.contains(key) {
                let full = ConfigKeyPath.dotted(v.path + [ConfigKey(key)])
                if v.path.isEmpty, v.table[key]?.type == .table {
                    let hint = ConfigKeyPath.suggestion(for: key, among: sectionNames).map { " (did you mean [\($0)]?)" }
                        ?? " (known sections: \(sectionNames.map { "[\($0)]" }.joined(separator: ", ")))"
                    throw ConfigDecodingError(message: "unknown section [\(full)]\(hint)")
                }
                let candidates = known.sorted()
                let hint = ConfigKeyPath.suggestion(for: key, among: candidates).map { " (did you mean \($0)?)" }
                    ?? (candidates.isEmpty ? "" : " (known keys: \(candidates.joined(separator: ", ")))")
                throw ConfigDecodingError(message: "unknown key \(full)\(hint)")
            }
        }
    }
}

struct TOMLValueDecoder: Decoder {
    let value: TOMLValueConvertible
    let codingPath: [CodingKey]
    let log: VisitLog
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func mismatch(_ expected: String) -> ConfigDecodingError {
        ConfigDecodingError(message: "\(ConfigKeyPath.dotted(codingPath)) must be \(expected), not \(ConfigKeyPath.typeName(value))")
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let t = value.table else { throw mismatch("a table") }
        return KeyedDecodingContainer(Keyed<Key>(decoder: self, table: t, visit: log.visit(t, at: codingPath)))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard let a = value.array else { throw mismatch("an array") }
        return Unkeyed(decoder: self, items: Array(a))
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { Single(decoder: self) }

    func child(_ v: TOMLValueConvertible, _ key: CodingKey) -> TOMLValueDecoder {
        TOMLValueDecoder(value: v, codingPath: codingPath + [key], log: log)
    }

    func decodeString() throws -> String {
        guard let s = value.string else { throw mismatch("a string") }
        return s
    }
    func decodeBool() throws -> Bool {
        guard let b = value.bool else { throw mismatch("a boolean") }
        return b
    }
    func decodeDouble() throws -> Double {
        if let d = value.double { return d }
        if let i = value.int { return Double(i) }
        throw mismatch("a number")
    }
    func decodeInteger<T: FixedWidthInteger>(_: T.Type) throws -> T {
        guard let i = value.int else { throw mismatch("an integer") }
        guard let v = T(exactly: i) else {
            throw ConfigDecodingError(message: "\(ConfigKeyPath.dotted(codingPath)) must be an integer between \(T.min) and \(T.max) (got \(i))")
        }
        return v
    }

    /// Scalars go straight to the typed decoders so that their errors name the type.
    func decodeValue<T: Decodable>(_: T.Type) throws -> T {
        switch T.self {
        case is String.Type: return try decodeString() as! T
        case is Bool.Type: return try decodeBool() as! T
        case is Double.Type: return try decodeDouble() as! T
        case is Int.Type: return try decodeInteger(Int.self) as! T
        default: return try T(from: self)
        }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: TOMLValueDecoder
        let table: TOMLTable
        let visit: VisitLog.Visit
        var codingPath: [CodingKey] { decoder.codingPath }
        var allKeys: [Key] {
            table.keys.compactMap { k in
                visit.asked.insert(k)
                return Key(stringValue: k)
            }
        }

        func contains(_ key: Key) -> Bool {
            visit.asked.insert(key.stringValue)
            return table[key.stringValue] != nil
        }

        func value(_ key: Key) throws -> TOMLValueDecoder {
            visit.asked.insert(key.stringValue)
            guard let v = table[key.stringValue] else {
                throw ConfigDecodingError(message: "\(ConfigKeyPath.dotted(codingPath + [key])) is missing")
            }
            return decoder.child(v, key)
        }

        // TOML has no null: a key is either there or not.
        func decodeNil(forKey key: Key) throws -> Bool { !contains(key) }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try value(key).decodeBool() }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try value(key).decodeString() }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try value(key).decodeDouble() }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try value(key).decodeDouble()) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try value(key).decodeInteger(type) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try value(key).decodeInteger(type) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try value(key).decodeInteger(type) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try value(key).decodeInteger(type) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try value(key).decodeInteger(type) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try value(key).decodeInteger(type) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try value(key).decodeInteger(type) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try value(key).decodeInteger(type) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try value(key).decodeInteger(type) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try value(key).decodeInteger(type) }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try value(key).decodeValue(type) }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try value(key).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer { try value(key).unkeyedContainer() }
        func superDecoder() throws -> Decoder { decoder }
        func superDecoder(forKey key: Key) throws -> Decoder { try value(key) }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let decoder: TOMLValueDecoder
        let items: [TOMLValueConvertible]
        var currentIndex = 0
        var codingPath: [CodingKey] { decoder.codingPath }
        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }

        struct Index: CodingKey {
            var intValue: Int?
            var stringValue: String { "\(intValue!)" }
            init(_ i: Int) { intValue = i }
            init?(stringValue: String) { return nil }
            init?(intValue: Int) { self.intValue = intValue }
        }

        mutating func next() throws -> TOMLValueDecoder {
            guard !isAtEnd else {
                throw ConfigDecodingError(message: "\(ConfigKeyPath.dotted(codingPath)) has too few elements")
            }
            defer { currentIndex += 1 }
            return decoder.child(items[currentIndex], Index(currentIndex))
        }
        mutating func decodeNil() throws -> Bool { false }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decodeValue(type) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            try next().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next().unkeyedContainer() }
        mutating func superDecoder() throws -> Decoder { try next() }
    }

    struct Single: SingleValueDecodingContainer {
        let decoder: TOMLValueDecoder
        var codingPath: [CodingKey] { decoder.codingPath }
        func decodeNil() -> Bool { false }
        func decode(_ type: Bool.Type) throws -> Bool { try decoder.decodeBool() }
        func decode(_ type: String.Type) throws -> String { try decoder.decodeString() }
        func decode(_ type: Double.Type) throws -> Double { try decoder.decodeDouble() }
        func decode(_ type: Float.Type) throws -> Float { Float(try decoder.decodeDouble()) }
        func decode(_ type: Int.Type) throws -> Int { try decoder.decodeInteger(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try decoder.decodeInteger(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try decoder.decodeInteger(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try decoder.decodeInteger(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try decoder.decodeInteger(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try decoder.decodeInteger(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.decodeInteger(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.decodeInteger(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.decodeInteger(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.decodeInteger(type) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decodeValue(type) }
    }
}
