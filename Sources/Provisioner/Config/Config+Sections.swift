extension Config {
    /// `[nginx]`.
    public var nginx: NginxSettings {
        get { section(NginxSettings.self) }
        set { set(newValue) }
    }

    /// `[php]`. (`php` itself is still the flat `[version: settings]` map, Config+Flat.swift.)
    public var phpSettings: PHPSettings {
        get { section(PHPSettings.self) }
        set { set(newValue) }
    }
}
