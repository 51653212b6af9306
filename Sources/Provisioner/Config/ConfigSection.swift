import Foundation

/// One `[name]` table of desa.toml, owned by one capability. Its keys are `@Setting`s,
/// each declared once (name, type, default, documentation, rule); from them it decodes
/// strictly (an unknown key or a wrong type is an error naming the key), takes `init()`
/// as its defaults for whatever the file leaves out, encodes, and is documented by
/// `desactl config reference`. Checks that span keys go in `validate(in:)`.
///
/// A capability declares its section in `Capability.settings`; `Config` itself does not
/// change. A section's `Codable` is two lines:
///
///     public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
///     public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }
public protocol ConfigSection: SettingsTable {
    /// The table's name in desa.toml, e.g. `nginx` for `[nginx]`.
    static var name: String { get }
    /// Refuses values that decode but make no sense; throws `DesaError(.config, "<key> ...")`
    /// naming the key as it is spelt in the file (`nginx.listen`). `config` gives the other
    /// sections, for checks that span them.
    func validate(in config: Config) throws
}

extension ConfigSection {
    public func validate(in config: Config) throws {}

    func isEqual(to other: any ConfigSection) -> Bool {
        guard let o = other as? Self else { return false }
        return self == o
    }
}

/// The section types desa.toml may contain besides the core ones (`mode`, `[regency]`,
/// `[paths]`, `[users]`): the registered capabilities' sections. The one list: decoding, encoding, validation and
/// `desactl config check` all follow it, in this order. Safe to read and change from any
/// thread; `register` is meant for start-up (and tests).
public enum ConfigSections {
    private static let lock = NSLock()
    /// The sections of the built-in capabilities (`Capability.settings`), then the agent's.
    nonisolated(unsafe) private static var types: [any ConfigSection.Type] = Capabilities.builtIn.flatMap { $0.settings } + agentSections
    /// The agent's own sections, which belong to no capability.
    static let agentSections: [any ConfigSection.Type] = [HealthSettings.self, MetricsSettings.self, StatusSettings.self]

    public static var registered: [any ConfigSection.Type] {
        get { lock.withLock { types } }
        set { lock.withLock { types = newValue } }
    }

    /// Adds a section type unless one of that name is registered already.
    public static func register(_ type: any ConfigSection.Type) {
        lock.withLock {
            if !types.contains(where: { $0.name == type.name }) { types.append(type) }
        }
    }
}

/// A config value that is one of a few words (`mode = "sandbox"`); decoding another word
/// is an error listing them: `mode must be sandbox or production (got "cloud")`.
public protocol ConfigEnum: RawRepresentable, CaseIterable, SettingValue where RawValue == String {}

extension ConfigEnum {
    public init(from decoder: Decoder) throws {
        let word = try decoder.singleValueContainer().decode(String.self)
        guard let v = Self(rawValue: word) else {
            let words = Self.allCases.map(\.rawValue)
            let list = words.count > 1 ? words.dropLast().joined(separator: ", ") + " or " + words.last! : words.joined()
            throw ConfigDecodingError(message: "\(ConfigKeyPath.dotted(decoder.codingPath)) must be \(list) (got \(Quote.show(word)))")
        }
        self = v
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

