import Foundation

/// One key of a config table, declared once: its name in the file, one line of
/// documentation, and what its value must be; its type and default are the property's own.
///
///     @Setting("sites_dir", "where the tenants' server blocks go", .path)
///     public var sitesDir = "/etc/nginx/desa"
///
/// Decoding (a key the file leaves out keeps its default), encoding (every key, in the
/// order declared), the grammar checks (`.path`, `.unit`), `desactl config check` and
/// `desactl config reference` (the README's table) all read these declarations; a table
/// type writes none of its keys anywhere else.
///
/// The value lives in a box that is copied on write, so that decoding can fill a fresh
/// table's keys through `Mirror` while a table stays a value.
@propertyWrapper
public struct Setting<Value: SettingValue>: Sendable, Equatable {
    final class Box: @unchecked Sendable {
        var value: Value
        init(_ v: Value) { value = v }
    }
    private var box: Box
    public let key: String
    public let doc: String
    public let rules: [SettingRule]

    public init(wrappedValue: Value, _ key: String, _ doc: String, _ rules: SettingRule...) {
        box = Box(wrappedValue)
        self.key = key; self.doc = doc; self.rules = rules
    }

    public var wrappedValue: Value {
        get { box.value }
        set {
            if !isKnownUniquelyReferenced(&box) { box = Box(newValue); return }
            box.value = newValue
        }
    }

    public static func == (a: Setting, b: Setting) -> Bool { a.wrappedValue == b.wrappedValue }
}

/// What a setting's value must be, beyond its type.
public enum SettingRule: Sendable, Equatable {
    /// An absolute path of a strict alphabet (`PathGrammar`); `""` for an optional one.
    case path
    /// A systemd unit name, or `""` (desactl runs the service itself).
    case unit
    /// The table cannot do without it: a file that has the table must have the key.
    case required
}

/// A type a setting may have: how it is read from and written to a TOML table.
public protocol SettingValue: Codable, Sendable, Equatable {
    /// The value at `key`, or nil when the table has no such key.
    static func read(_ c: KeyedDecodingContainer<ConfigKey>, _ key: ConfigKey) throws -> Self?
    func write(_ c: inout KeyedEncodingContainer<ConfigKey>, _ key: ConfigKey) throws
    /// The strings a `.path` rule checks, each with the key to name (`tls.trusted_roots[0]`).
    func paths(_ key: String) -> [(key: String, path: String)]
}

extension SettingValue {
    public static func read(_ c: KeyedDecodingContainer<ConfigKey>, _ key: ConfigKey) throws -> Self? {
        try c.decodeIfPresent(Self.self, forKey: key)
    }
    public func write(_ c: inout KeyedEncodingContainer<ConfigKey>, _ key: ConfigKey) throws { try c.encode(self, forKey: key) }
    public func paths(_ key: String) -> [(key: String, path: String)] { [] }
}

extension String: SettingValue {
    public func paths(_ key: String) -> [(key: String, path: String)] { [(key, self)] }
}
extension Int: SettingValue {}
extension Double: SettingValue {}
extension Bool: SettingValue {}
extension Array: SettingValue where Element == String {
    public func paths(_ key: String) -> [(key: String, path: String)] { enumerated().map { ("\(key)[\($0.offset)]", $0.element) } }
}

/// An optional path or name: `""` in the file means none.
extension Optional: SettingValue where Wrapped == String {
    public static func read(_ c: KeyedDecodingContainer<ConfigKey>, _ key: ConfigKey) throws -> String?? {
        guard let s = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
        return .some(s.isEmpty ? nil : s)
    }
    public func write(_ c: inout KeyedEncodingContainer<ConfigKey>, _ key: ConfigKey) throws { try c.encode(self ?? "", forKey: key) }
    public func paths(_ key: String) -> [(key: String, path: String)] { self.map { [(key, $0)] } ?? [] }
}

/// Tables of tables (`[php.versions."8.2"]`), written in the order of their names.
extension Dictionary: SettingValue where Key == String, Value: SettingsTable {
    public func write(_ c: inout KeyedEncodingContainer<ConfigKey>, _ key: ConfigKey) throws {
        var nested = c.nestedContainer(keyedBy: ConfigKey.self, forKey: key)
        for (k, v) in sorted(by: { $0.key < $1.key }) { try nested.encode(v, forKey: ConfigKey(k)) }
    }
}

/// A setting seen without its type: what decoding, encoding, checking and documenting need.
protocol AnySetting {
    var key: String { get }
    var doc: String { get }
    var rules: [SettingRule] { get }
    /// Reads the key into this setting's box; false when the table does not have it.
    func decode(from c: KeyedDecodingContainer<ConfigKey>) throws -> Bool
    func encode(into c: inout KeyedEncodingContainer<ConfigKey>) throws
    func paths(_ key: String) -> [(key: String, path: String)]
    /// The value as TOML (`"/etc/nginx/desa"`, `128`, `[]`); nil for a table of tables.
    var toml: String? { get }
    /// A table of tables' tables, by name.
    var nestedTables: [(name: String, settings: [any AnySetting])]? { get }
}

extension Setting: AnySetting {
    func decode(from c: KeyedDecodingContainer<ConfigKey>) throws -> Bool {
        guard let v = try Value.read(c, ConfigKey(key)) else { return false }
        // A fresh table's own box, not yet shared with any copy.
        box.value = v
        return true
    }

    func encode(into c: inout KeyedEncodingContainer<ConfigKey>) throws { try wrappedValue.write(&c, ConfigKey(key)) }

    func paths(_ key: String) -> [(key: String, path: String)] { wrappedValue.paths(key) }

    var toml: String? {
        guard let text = try? TOMLWriter().encode(OneKey(value: wrappedValue)), text.hasPrefix("v = ") else { return nil }
        return String(text.dropFirst(4).dropLast())
    }

    private struct OneKey: Encodable {
        var value: Value
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: ConfigKey.self)
            try value.write(&c, ConfigKey("v"))
        }
    }
}

/// A table whose keys are all `@Setting`s: it decodes, encodes, checks and documents itself
/// from them. Its `init()` is its defaults.
public protocol SettingsTable: Codable, Sendable, Equatable {
    init()
    /// After decoding: defaults that depend on other keys (`archive_dir` under `state_dir`),
    /// given the keys the file had and where the table is (`php.versions."8.2"`).
    mutating func settingsDecoded(present: Set<String>, at path: [CodingKey]) throws
}

extension SettingsTable {
    public mutating func settingsDecoded(present: Set<String>, at path: [CodingKey]) throws {}

    var settings: [any AnySetting] {
        Mirror(reflecting: self).children.compactMap { $0.value as? any AnySetting }
    }

    /// Decodes from the table's keys; what the file leaves out keeps its default, except a
    /// `.required` key, whose absence is an error naming it.
    public init(settingsFrom decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: ConfigKey.self)
        var present = Set<String>()
        for s in settings {
            if try s.decode(from: c) {
                present.insert(s.key)
            } else if s.rules.contains(.required) {
                throw ConfigDecodingError(message: "\(ConfigKeyPath.dotted(decoder.codingPath + [ConfigKey(s.key)])) is missing")
            }
        }
        try settingsDecoded(present: present, at: decoder.codingPath)
    }

    /// Writes every key, defaults too, in the order declared.
    public func encodeSettings(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ConfigKey.self)
        for s in settings { try s.encode(into: &c) }
    }

    /// The declared rules: every `.path` is absolute and of the strict alphabet, every
    /// `.unit` a unit name. `prefix` is the table's dotted name (`nginx`).
    public func checkSettings(_ prefix: String) throws {
        for s in settings {
            let key = prefix + "." + s.key
            for rule in s.rules {
                switch rule {
                case .path:
                    try PathGrammar.check(s.paths(key).map { ($0.key, $0.path) })
                case .unit:
                    if let name = s.paths(key).first?.path, !Config.isUnitName(name) {
                        throw DesaError(.config, "\(key) \(Quote.show(name)) is not a systemd unit name")
                    }
                case .required: break
                }
            }
        }
    }

    /// The keys as `desactl config reference` documents them: name, default, doc.
    static var reference: [(key: String, value: String?, doc: String)] {
        Self().settings.map { ($0.key, $0.toml, $0.doc) }
    }
}

/// A table of tables of settings (`[php.versions."8.2"]`), for documenting each table.
protocol TablesOfSettings {
    var tables: [(name: String, settings: [any AnySetting])] { get }
}

extension Dictionary: TablesOfSettings where Key == String, Value: SettingsTable {
    var tables: [(name: String, settings: [any AnySetting])] {
        sorted { $0.key < $1.key }.map { ($0.key, $0.value.settings) }
    }
}

extension Setting {
    var nestedTables: [(name: String, settings: [any AnySetting])]? { (wrappedValue as? any TablesOfSettings)?.tables }
}
