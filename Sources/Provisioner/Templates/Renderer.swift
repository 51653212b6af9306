import Crypto
import Foundation
import Mustache

/// Renders every file the control plane owns from Mustache templates. Pure: the same
/// tenants and config give the same bytes. Built-in templates come from
/// `paths.templates`; a template of the same name in `paths.operator_templates` wins,
/// and operators may add site templates there (`nginx/NAME.conf.mustache`).
public struct Renderer: @unchecked Sendable {
    public static let reservedSiteTemplates: Set<String> = ["suspended", "redirect", "portal"]
    static let nginxHeaderPrefix = "# desa-managed tenant="
    static let poolHeaderPrefix = "; desa-managed tenant="

    let config: Config
    /// Compiled templates by name (`nginx/default`), or the reason one did not compile.
    private var templates: [String: Result<MustacheTemplate, DesaError>] = [:]
    /// Every template that compiled, so templates can include `{{> partials/NAME}}`.
    private var library = MustacheLibrary()
    /// Renders remembered across plans (`RenderMemo`), or nil.
    let memo: RenderMemo?
    /// SHA-256 of every template's name and text: part of each memo key, so an edited
    /// template is rendered again.
    private(set) var fingerprint: [UInt8] = []

    public init(config: Config, memo: RenderMemo? = nil) throws {
        self.config = config
        self.memo = memo
        var sources: [String: String] = [:]
        for dir in [config.templates, config.operatorTemplates].compactMap({ $0 }) {
            for (name, path) in Self.templateFiles(in: dir) { sources[name] = path }
        }
        for required in ["nginx/default", "nginx/suspended", "php-fpm/pool", "pages/starter", "pages/suspended"]
        where sources[required] == nil {
            throw DesaError(.config, "template \(required).mustache not found in \(config.templates); set paths.templates to the templates/ directory of desa")
        }
        var everything = SHA256()
        for (name, path) in sources.sorted(by: { $0.key < $1.key }) {
            do {
                var text = AtomicFiles.read(path) ?? ""
                Self.add(name, text, to: &everything)
                // Config files are not HTML: no HTML escaping (every value passed the
                // name grammars), which also halves the cost of a plan.
                if !name.hasPrefix("pages/") { text = "{{% CONTENT_TYPE: TEXT}}" + text }
                let compiled = try MustacheTemplate(string: text)
                templates[name] = .success(compiled)
                library.register(compiled, named: name)
            } catch {
                templates[name] = .failure(DesaError(.invalidInput, "template \(path) does not compile: \(error)"))
            }
        }
        fingerprint = Array(everything.finalize())
    }

    private static func add(_ name: String, _ text: String, to h: inout SHA256) {
        h.update(data: Data((name + "\u{0}" + text + "\u{0}").utf8))
    }

    /// The templates' `fingerprint` as a renderer made now would have it, without compiling
    /// them (what the portal's page is made from, looked at after every sweep).
    static func fingerprint(config: Config) -> [UInt8] {
        var sources: [String: String] = [:]
        for dir in [config.templates, config.operatorTemplates].compactMap({ $0 }) {
            for (name, path) in templateFiles(in: dir) { sources[name] = path }
        }
        var everything = SHA256()
        for (name, path) in sources.sorted(by: { $0.key < $1.key }) { add(name, AtomicFiles.read(path) ?? "", to: &everything) }
        return Array(everything.finalize())
    }

    static func templateFiles(in dir: String) -> [(String, String)] {
        var out: [(String, String)] = []
        for sub in ["nginx", "php-fpm", "pages", "sandbox", "partials"] {
            let d = dir + "/" + sub
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: d) else { continue }
            for n in names where n.hasSuffix(".mustache") {
                var base = String(n.dropLast(".mustache".count))
                if base.hasSuffix(".conf") { base = String(base.dropLast(5)) }
                if base.hasSuffix(".html") { base = String(base.dropLast(5)) }
                out.append((sub + "/" + base, d + "/" + n))
            }
        }
        return out
    }

    /// The site templates a tenant may choose.
    public var siteTemplates: [String] {
        templates.keys.filter { $0.hasPrefix("nginx/") }.map { String($0.dropFirst(6)) }
            .filter { !Self.reservedSiteTemplates.contains($0) }.sorted()
    }

    public func checkSiteTemplate(_ name: String) throws {
        try Names.validateTemplateName(name)
        guard siteTemplates.contains(name) else {
            throw DesaError.invalid("no site template \(Quote.show(name)); available: \(siteTemplates.joined(separator: ", "))")
        }
    }

    func render(_ name: String, _ context: [String: Any]) throws -> String {
        switch templates[name] {
        case .success(let t)?: return t.render(context, library: library)
        case .failure(let e)?: throw e
        case nil: throw DesaError.invalid("no template \(name)")
        }
    }

    // MARK: per-tenant files

    public func context(_ t: Tenant, aliases: [String]) throws -> [String: Any] {
        let home = t.home(config)
        let kindLabel: String
        switch t.kind {
        case .desa: kindLabel = "Desa"
        case .kelurahan: kindLabel = "Kelurahan"
        case .desaAdat: kindLabel = "Desa Adat"
        }
        return [
            "code": t.code, "slug": t.slug, "name": t.name, "district": t.districtName,
            "kind": t.kind.rawValue, "kind_label": kindLabel, "kind_label_lower": kindLabel.lowercased(),
            "domain": t.primaryDomain(config), "aliases": aliases,
            "server_names": ([t.primaryDomain(config)] + aliases).joined(separator: " "),
            "listen": config.nginx.listen, "home": home, "public_root": home + "/public",
            "tenant_log_root": config.tenantLogRoot, "tenant_log_dir": t.logDir(config),
            "tmp_dir": home + "/tmp", "sessions_dir": home + "/sessions",
            "error_log": config.nginx.tenantErrorLogs == .shared ? config.logDir + "/tenants-error.log" : t.logDir(config) + "/error.log",
            "acme_root": config.acmeRoot, "fastcgi_params": config.nginx.fastcgiParams,
            "socket": try t.phpSocket(config), "user": t.userName(prefix: config.userPrefix),
            "pool": t.userName(prefix: config.userPrefix), "web_group": config.webGroup,
            "php_version": t.php, "release_dir": config.releaseDir, "php_bin_dir": Releases.phpBinDir(config, t.php),
            "upkeep_flag": config.upkeepDir + "/" + t.slug, "retry_after": config.apps.retryAfter,
            "host_port": !["80", "443"].contains(String(config.nginx.listen.split(separator: ":").last ?? "")),
            "ping_path": PoolsCapability.pingPath, "ping_response": PoolsCapability.pingResponse,
        ]
    }

    /// The nginx server block: the tenant's site template, or the 503 block when suspended.
    /// The tenant's server blocks. Without certificates: one, on HTTP. With `tls`: one
    /// HTTPS block per certificate (its names), a redirect to HTTPS for those names on
    /// HTTP (ACME challenges excepted), and an HTTP block for names no certificate covers
    /// yet. A suspended tenant answers 503 on both.
    public func vhost(_ t: Tenant, aliases: [String], tls: [TLSServe] = []) throws -> String {
        for name in [t.primaryDomain(config)] + aliases where name.count > config.nginx.maxServerNameLength {
            throw DesaError.invalid("server name \(name) is \(name.count) characters; nginx.server_names_hash_bucket_size \(config.nginx.serverNamesHashBucketSize) holds names of up to \(config.nginx.maxServerNameLength)")
        }
        var ctx = try context(t, aliases: aliases)
        let name: String
        if t.desired == .suspended {
            name = "nginx/suspended"
            ctx["suspended_page"] = Self.nginxString(try render("pages/suspended", ctx))
        } else {
            name = "nginx/" + t.template
            guard templates[name] != nil, !Self.reservedSiteTemplates.contains(t.template) else {
                throw DesaError.invalid("tenant \(t.slug) uses site template \(Quote.show(t.template)), which does not exist")
            }
        }
        var blocks: [String] = []
        let all = [t.primaryDomain(config)] + aliases
        let covered = tls.flatMap(\.names)
        for s in tls {
            var c = ctx
            c["listen"] = config.tls.listen + " ssl http2"
            c["server_names"] = s.names.joined(separator: " ")
            c["tls"] = ["certificate": s.certificate, "key": s.key, "hsts_max_age": config.tls.hstsMaxAge > 0 ? "\(config.tls.hstsMaxAge)" : false] as [String: Any]
            let b = try render(name, c)
            try Self.checkHardening(b, template: name)
            guard b.contains("ssl_certificate_key ") else {
                throw DesaError.invalid("template \(name) has no {{> partials/tls}} in its server block, so it cannot serve HTTPS")
            }
            blocks.append(b)
        }
        if !covered.isEmpty && t.desired != .suspended {
            var c = ctx
            c["server_names"] = covered.joined(separator: " ")
            c["https_port_suffix"] = config.tls.port == 443 ? "" : ":\(config.tls.port)"
            blocks.append(try render("nginx/redirect", c))
        }
        let plain = t.desired == .suspended ? all : all.filter { !covered.contains($0) }
        if !plain.isEmpty {
            var c = ctx
            c["server_names"] = plain.joined(separator: " ")
            let b = try render(name, c)
            try Self.checkHardening(b, template: name)
            blocks.append(b)
        }
        return Self.nginxHeaderPrefix + t.code + " template=" + (t.desired == .suspended ? "suspended" : t.template)
            + "\n# Managed by desa: desactl apply rewrites this file; edit the template instead.\n"
            + blocks.joined(separator: "\n")
    }

    /// Every server block, operators' own templates included, must refuse to serve a
    /// tenant's link to files it does not own; a template that drops or weakens that
    /// fails its tenants instead of exposing the others.
    static func checkHardening(_ vhost: String, template: String) throws {
        // A byte scan, line by line: a plan renders every tenant's vhost, and splitting
        // each into Strings cost a third of a converged plan.
        let wanted = Array("disable_symlinks if_not_owner;".utf8), name = Array("disable_symlinks".utf8)
        let off = Array("disable_symlinks off;".utf8), deny = Array("deny all;".utf8), ret = Array("return ".utf8)
        var found = 0, exact = 0
        var refusing = false
        var text = vhost
        text.withUTF8 { b in
            var i = 0
            while i < b.count {
                var end = i
                while end < b.count && b[end] != 10 { end += 1 }
                var s = i
                while s < end && (b[s] == 32 || b[s] == 9) { s += 1 }
                var e = end
                while e > s && (b[e - 1] == 32 || b[e - 1] == 9 || b[e - 1] == 13) { e -= 1 }
                if e - s >= name.count && b[s..<(s + name.count)].elementsEqual(name) {
                    // Where a location only refuses (deny all, return), nothing is read:
                    // `off` there only lets nginx log the request.
                    if !(b[s..<e].elementsEqual(off) && refusing) {
                        found += 1
                        if b[s..<e].elementsEqual(wanted) { exact += 1 }
                    }
                } else if e > s && b[s] != 35 {
                    refusing = b[s..<e].elementsEqual(deny) || (e - s > ret.count && b[s..<(s + ret.count)].elementsEqual(ret))
                }
                i = end + 1
            }
        }
        guard found == 1, exact == 1 else {
            throw DesaError.invalid("template \(template) must contain exactly one 'disable_symlinks if_not_owner;' (include {{> partials/hardening}} in its server block)")
        }
    }

    /// The vhost, or nil when `existing` already holds exactly it (see `RenderMemo`).
    public func vhost(_ t: Tenant, aliases: [String], tls: [TLSServe], unlessEqualTo existing: SeenFile?) throws -> String? {
        try rendered("vhost", try context(t, aliases: aliases),
                     extra: [t.desired.rawValue, t.template] + tls.flatMap { [$0.certificate, $0.key] + $0.names + ["|"] },
                     existing: existing) { try vhost(t, aliases: aliases, tls: tls) }
    }

    /// The pool, or nil when `existing` already holds exactly it.
    public func pool(_ t: Tenant, aliases: [String], unlessEqualTo existing: SeenFile?) throws -> String? {
        try rendered("pool", try context(t, aliases: aliases), extra: [], existing: existing) { try pool(t, aliases: aliases) }
    }

    public func pool(_ t: Tenant, aliases: [String]) throws -> String {
        Self.poolHeaderPrefix + t.code
            + "\n; Managed by desa: desactl apply rewrites this file; edit the template instead.\n"
            + (try render("php-fpm/pool", try context(t, aliases: aliases)))
    }

    public func starterPage(_ t: Tenant, aliases: [String]) throws -> String {
        try render("pages/starter", try context(t, aliases: aliases))
    }

    public func renderSandbox(_ name: String, _ context: [String: Any]) throws -> String {
        try render("sandbox/" + name, context)
    }

    /// Text inside an nginx double-quoted string: backslashes and quotes escaped, and no
    /// `$` (nginx would read a variable).
    static func nginxString(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "$": out += "&#36;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// The tenant code a managed file names in its first line, or nil if the file is not ours.
    public static func managedTenant(ofFileContent text: Substring) -> String? {
        let first = text.prefix(while: { $0 != "\n" })
        for prefix in [nginxHeaderPrefix, poolHeaderPrefix] where first.hasPrefix(prefix) {
            return String(first.dropFirst(prefix.count).prefix(while: { $0 != " " }))
        }
        return nil
    }
}
