/// An `Encoder` that writes TOML text with keys in the order the types encode them (TOMLKit
/// sorts them), so a written config reads like the documented one. Tables within tables
/// become `[a.b]` headers; arrays hold scalars only. Strings are basic strings, escaped.
struct TOMLWriter {
    func encode<T: Encodable>(_ value: T) throws -> String {
        let root = Node()
        try value.encode(to: NodeEncoder(node: root, codingPath: []))
        guard root.kind == .table else {
            throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "a config must encode to a table"))
        }
        var out = ""
        Self.write(root, path: [], into: &out)
        return out
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    let hex = String(u.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func key(_ k: String) -> String {
        let bare = !k.isEmpty && k.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
        return bare ? k : quoted(k)
    }

    private static func write(_ t: Node, path: [String], into out: inout String) {
        let scalars = t.entries.filter { $0.1.kind != .table }
        if !path.isEmpty && (!scalars.isEmpty || t.entries.isEmpty) {
            if !out.isEmpty { out += "\n" }
            out += "[" + path.map(key).joined(separator: ".") + "]\n"
        }
        for (k, v) in scalars { out += key(k) + " = " + inline(v) + "\n" }
        for (k, v) in t.entries where v.kind == .table { write(v, path: path + [k], into: &out) }
    }

    private static func inline(_ n: Node) -> String {
        switch n.kind {
        case .scalar: return n.scalar
        case .array: return "[" + n.items.map(inline).joined(separator: ", ") + "]"
        case .table: return "{ " + n.entries.map { key($0.0) + " = " + inline($0.1) }.joined(separator: ", ") + " }"
        case .empty: return "\"\""
        }
    }

    /// One value of the document being written. Containers hold their node by reference,
    /// so a nested container writes straight into its parent's tree.
    final class Node {
        enum Kind { case empty, scalar, array, table }
        var kind: Kind = .empty
        var scalar = ""
        var items: [Node] = []
        var entries: [(String, Node)] = []

        func child(_ key: String) -> Node {
            kind = .table
            if let existing = entries.first(where: { $0.0 == key })?.1 { return existing }
            let n = Node()
            entries.append((key, n))
            return n
        }
        func appended() -> Node {
            kind = .array
            let n = Node()
            items.append(n)
            return n
        }
        func set(_ literal: String) { kind = .scalar; scalar = literal }
    }

    struct NodeEncoder: Encoder {
        let node: Node
        let codingPath: [CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            node.kind = .table
            return KeyedEncodingContainer(Keyed<Key>(encoder: self))
        }
        func unkeyedContainer() -> UnkeyedEncodingContainer {
            node.kind = .array
            return Unkeyed(encoder: self)
        }
        func singleValueContainer() -> SingleValueEncodingContainer { Single(encoder: self) }

        func encode<T: Encodable>(_ value: T) throws {
            switch value {
            case let s as String: node.set(TOMLWriter.quoted(s))
            case let b as Bool: node.set(b ? "true" : "false")
            case let d as Double: node.set(d.isFinite ? "\(d)" : (d.isNaN ? "nan" : (d < 0 ? "-inf" : "inf")))
            case let i as any FixedWidthInteger:
                guard let v = Int64(exactly: i) else {
                    throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "TOML integers are 64-bit"))
                }
                node.set(String(v))
            default: try value.encode(to: self)
            }
        }
        func nested(_ key: CodingKey) -> NodeEncoder { NodeEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]) }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: NodeEncoder
        var codingPath: [CodingKey] { encoder.codingPath }
        // TOML has no null: a nil optional is left out.
        func encodeNil(forKey key: Key) throws {}
        func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try encoder.nested(key).encode(value) }
        func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            encoder.nested(key).container(keyedBy: keyType)
        }
        func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer { encoder.nested(key).unkeyedContainer() }
        func superEncoder() -> Encoder { encoder }
        func superEncoder(forKey key: Key) -> Encoder { encoder.nested(key) }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let encoder: NodeEncoder
        var codingPath: [CodingKey] { encoder.codingPath }
        var count: Int { encoder.node.items.count }
        private func next() -> NodeEncoder {
            NodeEncoder(node: encoder.node.appended(), codingPath: codingPath + [ConfigKey("\(count)")])
        }
        mutating func encodeNil() throws {
            throw EncodingError.invalidValue(Optional<Int>.none as Any, .init(codingPath: codingPath, debugDescription: "TOML arrays cannot hold nothing"))
        }
        mutating func encode<T: Encodable>(_ value: T) throws {
            let e = next()
            try e.encode(value)
            if e.node.kind == .table {
                throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "config arrays hold scalars only"))
            }
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            next().container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer { next().unkeyedContainer() }
        mutating func superEncoder() -> Encoder { next() }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: NodeEncoder
        var codingPath: [CodingKey] { encoder.codingPath }
        func encodeNil() throws {}
        func encode<T: Encodable>(_ value: T) throws { try encoder.encode(value) }
        func encode(_ value: Bool) throws { try encoder.encode(value) }
        func encode(_ value: String) throws { try encoder.encode(value) }
        func encode(_ value: Double) throws { try encoder.encode(value) }
        func encode(_ value: Float) throws { try encoder.encode(Double(value)) }
        func encode(_ value: Int) throws { try encoder.encode(value) }
        func encode(_ value: Int8) throws { try encoder.encode(value) }
        func encode(_ value: Int16) throws { try encoder.encode(value) }
        func encode(_ value: Int32) throws { try encoder.encode(value) }
        func encode(_ value: Int64) throws { try encoder.encode(value) }
        func encode(_ value: UInt) throws { try encoder.encode(value) }
        func encode(_ value: UInt8) throws { try encoder.encode(value) }
        func encode(_ value: UInt16) throws { try encoder.encode(value) }
        func encode(_ value: UInt32) throws { try encoder.encode(value) }
        func encode(_ value: UInt64) throws { try encoder.encode(value) }
    }
}
