import Foundation

/// `[apps]`: the application releases stored once for every tenant, and how
/// `app upgrade` moves a regency's villages from one to the next.
public struct AppSettings: ConfigSection {
    public static let name = "apps"

    @Setting("release_dir", "where releases are unpacked once, root's and read-only, shared by every tenant; \"\": state_dir/releases", .path)
    public var releaseDir: String? = nil
    @Setting("keep_releases", "app release prune keeps the newest this many releases of each application, and any a tenant runs")
    public var keepReleases = 3
    @Setting("canary", "the tenant (slug) app upgrade takes first, alone; \"\": the first in the list")
    public var canary = ""
    @Setting("waves", "after the canary, the share of all tenants each wave brings to, in percent, growing (\"5%,25%,100%\"); the last always takes the rest")
    public var waves = "5%,25%,100%"
    @Setting("parallel", "tenants upgraded at once within a wave")
    public var parallel = 2
    @Setting("migration_timeout", "seconds OpenSID's migrations may take for one tenant before its upgrade fails and is rolled back")
    public var migrationTimeout = 600
    @Setting("retry_after", "the Retry-After (seconds) of the 503 a village answers while its release changes")
    public var retryAfter = 60

    public init() {}
    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    /// `waves` as growing percentages, the last 100; nil when it does not parse.
    public var waveShares: [Int]? {
        var out: [Int] = []
        for part in waves.split(separator: ",", omittingEmptySubsequences: false) {
            var p = part.trimmingCharacters(in: .whitespaces)
            if p.hasSuffix("%") { p.removeLast() }
            guard !p.isEmpty, p.allSatisfy({ $0.isASCII && $0.isNumber }), p.count <= 3, let v = Int(p), (1...100).contains(v), v > (out.last ?? 0) else { return nil }
            out.append(v)
        }
        if out.isEmpty { return nil }
        if out.last != 100 { out.append(100) }
        return out
    }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        guard (1...100).contains(keepReleases) else { throw fail("apps.keep_releases must be 1 to 100 (got \(keepReleases))") }
        guard (1...32).contains(parallel) else { throw fail("apps.parallel must be 1 to 32 (got \(parallel))") }
        guard (10...86_400).contains(migrationTimeout) else { throw fail("apps.migration_timeout must be 10 to 86400 seconds (got \(migrationTimeout))") }
        guard (1...86_400).contains(retryAfter) else { throw fail("apps.retry_after must be 1 to 86400 seconds (got \(retryAfter))") }
        guard waveShares != nil else {
            throw fail("apps.waves must be percentages from 1 to 100, growing, separated by commas, like \"5%,25%,100%\" (got \(Quote.show(waves)))")
        }
        if !canary.isEmpty, !canary.allSatisfy({ ("a"..."z").contains($0) || $0.isASCII && $0.isNumber || $0 == "-" }) {
            throw fail("apps.canary must be a tenant's slug (got \(Quote.show(canary)))")
        }
        if let d = releaseDir, d.hasPrefix(config.webRoot + "/") { throw fail("apps.release_dir \(d) lies in the web root, where tenants live") }
    }
}

extension Config {
    /// `[apps]`, the applications capability's section.
    public var apps: AppSettings {
        get { section(AppSettings.self) }
        set { set(newValue) }
    }

    /// Releases, one directory per application and version: `releases/opensid/2410.0.0`.
    public var releaseDir: String { apps.releaseDir ?? stateDir + "/releases" }
    /// Flags of the villages whose release is changing: nginx answers 503 while one is there.
    public var upkeepDir: String { stateDir + "/upkeep" }
    /// What upgrades keep: each tenant's dump from just before, the run to resume.
    public var appsStateDir: String { stateDir + "/apps" }
}
