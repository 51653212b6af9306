import Foundation
import TOMLKit

/// Everything that differs between a sandbox and a production server. The same code
/// serves both; only these values change. Read from TOML (`/etc/desa/desa.toml`).
///
/// Decoding is strict: an unknown key or section, or a value of the wrong type, is an
/// error naming the key (`desa.toml: unknown key nginx.sites_dri (did you mean sites_dir?)`);
/// a key the file leaves out takes its default. Config keeps the core sections (`mode`,
/// `[regency]`, `[paths]`, `[users]`); every other section is a `ConfigSection` registered
/// in `ConfigSections.registered`, reached with `section(_:)` or an accessor such as
/// `nginx`. The flat properties (`nginxSitesDir`, ...) are in Config+Flat.swift.
public struct Config: Sendable, Equatable, Codable {
    public enum Mode: String, ConfigEnum {
        case sandbox, production
    }

    /// The file this was read from; not part of the file.
    public var path: String = Config.defaultPath
    public var mode: Mode = .production
    public var regency = RegencySettings()
    public var paths = PathSettings()
    public var users = UserSettings()
    /// The capability sections by name. Absent ones are their defaults, see `section(_:)`.
    public private(set) var sections: [String: any ConfigSection] = [:]

    public init() {}

    public static let defaultPath = "/etc/desa/desa.toml"

    /// The config file to use: `explicit` (a --config flag), else `$DESA_CONFIG` if not
    /// empty, else /etc/desa/desa.toml. Both executables resolve it here.
    public static func resolvedPath(_ explicit: String?,
                                    environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit { return explicit }
        if let env = environment["DESA_CONFIG"], !env.isEmpty { return env }
        return defaultPath
    }

    /// The section of type `S`: as decoded or set, else its defaults.
    public func section<S: ConfigSection>(_ type: S.Type) -> S {
        sections[S.name] as? S ?? S()
    }

    /// Replaces the section of `s`'s type.
    public mutating func set<S: ConfigSection>(_ s: S) {
        sections[S.name] = s
    }

    public var databasePath: String { stateDir + "/state.sqlite" }
    public var lockPath: String { stateDir + "/lock" }
    public var rollbackDir: String { stateDir + "/rollback" }
    /// Where the logs that root-run masters open live, one directory per tenant:
    /// outside the homes, so no tenant can put a link where nginx or php-fpm write.
    public var tenantLogRoot: String { logDir + "/tenants" }

    /// Loads and validates a config file. Errors name the file and the key.
    public static func load(path: String) throws -> Config {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DesaError(.config, "cannot read config \(path); pass --config PATH or set DESA_CONFIG (a sandbox: desactl sandbox init DIR)")
        }
        var c = try parse(text, source: path)
        c.path = path
        return c
    }

    /// Decodes and validates TOML text; errors (`DesaError(.config)`) start with `source`.
    public static func parse(_ text: String, source: String = "config") throws -> Config {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw DesaError(.config, "\(source): \(e.description) at line \(e.source.begin.line)")
        }
        let c: Config
        do {
            c = try StrictTOMLDecoder(sectionNames: sectionNames).decode(Config.self, from: table)
        } catch let e as ConfigDecodingError {
            throw DesaError(.config, "\(source): \(e.message)")
        } catch let e as DecodingError {
            throw DesaError(.config, "\(source): \(e)")
        }
        try c.validate(source: source)
        return c
    }

    /// The config as TOML, every key written out (defaults too); `parse` gives it back.
    public func toml() throws -> String {
        try TOMLWriter().encode(self)
    }

    static let coreSections: [any ConfigSection.Type] = [RegencySettings.self, PathSettings.self, UserSettings.self]

    /// The sections a file may have, in the order they are written.
    static var sectionNames: [String] { (coreSections + ConfigSections.registered).map { $0.name } }

    /// The registered sections (decoded or defaults), then any set but not registered.
    var allSections: [any ConfigSection] {
        let registered = ConfigSections.registered
        var out: [any ConfigSection] = registered.map { t in sections[t.name] ?? t.init() }
        let names = Set(registered.map { $0.name })
        out += sections.filter { !names.contains($0.key) }.sorted { $0.key < $1.key }.map(\.value)
        return out
    }

    func validate(source: String) throws {
        for s in [regency, paths, users] as [any ConfigSection] + allSections {
            do {
                try s.checkSettings(type(of: s).name)
                try s.validate(in: self)
            } catch let e as DesaError {
                throw DesaError(.config, "\(source): \(e.message)")
            }
        }
    }

    enum CodingKeys: String, CodingKey { case mode }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: ConfigKey.self)
        mode = try c.decodeIfPresent(Mode.self, forKey: ConfigKey("mode")) ?? mode
        regency = try Self.decodeSection(c) ?? regency
        paths = try Self.decodeSection(c) ?? paths
        users = try Self.decodeSection(c) ?? users
        for type in ConfigSections.registered {
            sections[type.name] = try Self.decodeSection(c, type) ?? type.init()
        }
    }

    private static func decodeSection<S: ConfigSection>(_ c: KeyedDecodingContainer<ConfigKey>, _: S.Type = S.self) throws -> S? {
        try c.decodeIfPresent(S.self, forKey: ConfigKey(S.name))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ConfigKey.self)
        try c.encode(mode, forKey: ConfigKey("mode"))
        for s in [regency, paths, users] as [any ConfigSection] + allSections {
            try c.encode(s, forKey: ConfigKey(type(of: s).name))
        }
    }

    public static func == (a: Config, b: Config) -> Bool {
        guard a.path == b.path, a.mode == b.mode, a.regency == b.regency, a.paths == b.paths, a.users == b.users else {
            return false
        }
        // An absent section equals its defaults.
        for name in Set(a.sections.keys).union(b.sections.keys) {
            let x = a.sections[name], y = b.sections[name]
            guard let some = x ?? y else { continue }
            let t = type(of: some)
            if !(x ?? t.init()).isEqual(to: y ?? t.init()) { return false }
        }
        return true
    }
}

extension Config {
    /// A systemd unit name as desa passes it to systemctl (empty: desactl runs the service itself).
    static func isUnitName(_ s: String) -> Bool {
        s.count <= 128 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "@._-:".contains($0)) }
            && !s.hasPrefix("-")
    }
}

/// Paths that reach configs and command lines: absolute, no `..`, a strict alphabet.
public enum PathGrammar {
    public static func isSafeAbsolute(_ p: String) -> Bool {
        guard p.hasPrefix("/"), p.count < 512 else { return false }
        if p.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) { return false }
        return p.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "/._-+".contains($0)) }
    }

    /// Throws `DesaError(.config)` naming the first key whose path is not safe.
    static func check(_ paths: [(key: String, path: String)]) throws {
        for (key, p) in paths where !isSafeAbsolute(p) {
            throw DesaError(.config, "\(key) \(Quote.show(p)) must be absolute and contain only letters, digits and / . _ - +")
        }
    }
}

/// `HOST:PORT` where the health probe connects.
public struct ProbeAddress: Sendable {
    public var host: String
    public var port: UInt16
    public init?(_ s: String) {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        host = String(s[..<colon])
        self.port = port
        if host.isEmpty { return nil }
    }
}
