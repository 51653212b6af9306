import Crypto
import Foundation
import GRDB

/// The portal's page, from the state database: every active village grouped by
/// kecamatan (by name), each with its kind, a link to its site (HTTPS once a certificate
/// serves its name) and whether it is up, as the last sweep found it. Pure given its
/// inputs: nothing in it changes with the clock, so a converged server plans no write.
public struct PortalPage: Sendable {
    /// One village as the page shows it.
    public struct Village: Sendable, Equatable {
        public var code: String
        public var name: String
        public var kindLabel: String
        public var district: String
        public var url: String
        /// nil: not checked yet.
        public var up: Bool?
    }

    /// The checks that say whether a village's site answers its visitors. The others
    /// (a backup's age, a quota) concern its operators, not whether it is up.
    public static let servingChecks: Set<HealthCheck> = [.http, .https, .php, .app]

    public var title: String
    public var host: String
    public var villages: [Village]

    /// The page's villages from the tenants, their latest health (by code, then check)
    /// and what serves each over HTTPS.
    public init(config c: Config, tenants: [Tenant], health: [String: [HealthCheck: CheckStatus]], https: Set<String>) {
        var down: [String: Bool] = [:]
        for (code, checks) in health {
            let serving = checks.values.filter { Self.servingChecks.contains($0.check) }
            if !serving.isEmpty { down[code] = serving.contains { $0.state == .down } }
        }
        self.init(config: c, tenants: tenants, down: down, https: https)
    }

    /// `down`: by code, whether any serving check is down (absent: none checked yet).
    init(config c: Config, tenants: [Tenant], down: [String: Bool], https: Set<String>) {
        title = c.portalTitle
        host = c.portalHost
        let port = String(c.nginx.listen.split(separator: ":").last ?? "80")
        let httpPort = port == "80" ? "" : ":" + port
        let httpsPort = c.tls.port == 443 ? "" : ":\(c.tls.port)"
        villages = tenants.filter { $0.desired == .active }.map { t in
            let domain = t.primaryDomain(c)
            let url = https.contains(t.code) ? "https://\(domain)\(httpsPort)/" : "http://\(domain)\(httpPort)/"
            let up: Bool? = down[t.code].map { !$0 }
            return Village(code: t.code, name: t.name, kindLabel: Self.kindLabel(t.kind), district: t.districtName, url: url, up: up)
        }
    }

    /// Reads what the page needs in one read transaction.
    public static func load(_ db: Database, config: Config, tenants: [Tenant], aliases: [String: [String]], now: Date) throws -> PortalPage {
        // Only what the page shows: whether any serving check is down, per village (the
        // agent's drift look plans this every sweep, at 5,000 villages too).
        let checks = servingChecks.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ")
        var down: [String: Bool] = [:]
        let rows = try GRDB.Row.fetchCursor(db, sql: """
            SELECT subject, MAX(state = 'down') FROM health_check WHERE "check" IN (\(checks)) AND subject != '' GROUP BY subject
            """)
        while let row = try rows.next() { down[row[0]] = (row[1] as Int) != 0 }
        var https = Set<String>()
        if config.tls.enabled {
            let serving = CertStore.serving(try CertStore.records(db), tenants: tenants, aliases: aliases, config: config, now: now)
            for (code, s) in serving {
                let primary = tenants.first { $0.code == code }.map { $0.primaryDomain(config) }
                if s.contains(where: { $0.names.contains { $0 == primary } }) { https.insert(code) }
            }
        }
        return PortalPage(config: config, tenants: tenants, down: down, https: https)
    }

    static func kindLabel(_ k: VillageKind) -> String {
        switch k {
        case .desa: return "Desa"
        case .kelurahan: return "Kelurahan"
        case .desaAdat: return "Desa Adat"
        }
    }

    /// Lowercase ASCII words for the search box: diacritics folded, anything else a space
    /// (the script folds what is typed the same way).
    static func searchKey(_ parts: [String]) -> String {
        let folded = parts.joined(separator: " ").folding(options: [.diacriticInsensitive, .caseInsensitive], locale: nil).lowercased()
        var out = ""
        var space = true
        for ch in folded.unicodeScalars {
            if ch.isASCII, ("a"..."z").contains(Character(ch)) || ("0"..."9").contains(Character(ch)) {
                out.unicodeScalars.append(ch); space = false
            } else if !space {
                out.append(" "); space = true
            }
        }
        return space && !out.isEmpty ? String(out.dropLast()) : out
    }

    /// The Mustache context of `pages/portal`: kecamatan in name order, villages in name
    /// order within each; every value is text (the page template escapes it).
    func context(script: String) -> [String: Any] {
        let byDistrict = Dictionary(grouping: villages, by: \.district)
        let names = byDistrict.keys.sorted { $0.localizedStandardCompare($1) == .orderedAscending }
        let districts = names.enumerated().map { i, d -> [String: Any] in
            let vs = byDistrict[d]!.sorted { ($0.name, $0.code) < ($1.name, $1.code) }
            return [
                "name": d, "count": vs.count, "id": "kec-\(i + 1)",
                "villages": vs.map { v -> [String: Any] in
                    let state = v.up.map { $0 ? "up" : "down" } ?? "unknown"
                    let label = v.up.map { $0 ? "aktif" : "sedang gangguan" } ?? "belum diperiksa"
                    return ["name": v.name, "kind_label": v.kindLabel, "url": v.url, "state": state, "state_label": label,
                            "search": Self.searchKey([v.kindLabel, v.name, d])]
                },
            ]
        }
        let up = villages.filter { $0.up == true }.count
        return ["title": title, "host": host, "count": villages.count, "district_count": districts.count, "up_count": up,
                "districts": districts, "script": script]
    }

    /// The page, whose one inline script and style the portal's server block allows by
    /// their hashes, so that nothing else runs.
    public func render(_ r: Renderer) throws -> String {
        let (script, style) = try Self.inline(r)
        var c = context(script: script)
        c["style"] = style
        return "<!-- desa-managed portal: desactl apply and desa-agent rewrite this file; edit templates/pages/portal.html.mustache instead -->\n"
            + (try r.render("pages/portal", c))
    }

    /// The page's inline script and style, as the server block's CSP hashes them.
    static func inline(_ r: Renderer) throws -> (script: String, style: String) {
        (try r.render("partials/portal-script", [:]), try r.render("partials/portal-style", [:]))
    }

    /// What the page is made from, as a short hex digest: its villages, title and host, and
    /// the templates. A page whose header carries the same digest (and health stamp) need not
    /// be rendered again.
    func digest(templates fingerprint: [UInt8]) -> String {
        var h = SHA256()
        h.update(data: Data(fingerprint))
        var text = title + "\u{0}" + host + "\u{0}"
        for v in villages {
            text += v.code + "\u{1}" + v.name + "\u{1}" + v.kindLabel + "\u{1}" + v.district + "\u{1}" + v.url + "\u{1}"
                + (v.up.map { $0 ? "up" : "down" } ?? "unknown") + "\u{0}"
        }
        h.update(data: Data(text.utf8))
        return h.finalize().prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    /// A CSP source for exactly this inline text: `'sha256-…'`.
    static func cspHash(_ text: String) -> String {
        "'sha256-" + Data(SHA256.hash(data: Data(text.utf8))).base64EncodedString() + "'"
    }
}
