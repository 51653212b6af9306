import Crypto
import Foundation
import GRDB

/// The regency's portal (`[portal]`, on by default): nginx serves one page of every
/// active village at `portal.host` (`desa.<regency domain>`), with HTTPS once a
/// certificate covers the host (it joins the certificate bundles as member `portal`).
/// Its two files are planned and applied like a vhost: the server block
/// `<sites_dir>/_portal.conf` (checked by `nginx -t`, one reload) and the page
/// `<portal.root>/index.html`, which desa also rewrites when a sweep records a change of
/// health (`HealthReacting`), without a reload. The host is reserved: no village slug
/// or alias may take it (`NameReserving`).
public struct PortalCapability: StatefulCapability, HealthReacting, NameReserving {
    /// The files as they should be; nil in `State`: the portal is off. The page is rendered
    /// only when the one on disk was made from other inputs (or was altered): its first line
    /// says what it was made from (`key`) and carries its body's digest.
    public struct Files: Sendable {
        public var portal: PortalPage
        /// `<!-- desa-managed portal health=N inputs=HEX`
        public var key: String
        public var conf: String

        /// The whole page: the key, the body's digest, the body.
        public func page(_ r: Renderer) throws -> String {
            PortalCapability.withHeader(key, try portal.render(r))
        }
    }
    public typealias State = Files?

    public struct Observation: Sendable {
        public var stats: [String: FileStat]
        public var conf: String?
        public var page: String?
    }

    public init() {}
    public var name: String { "portal" }
    public var settings: [any ConfigSection.Type] { [PortalSettings.self] }

    /// The member name the portal's host has in the certificate bundles.
    public static let member = "portal"
    static let confHeader = "# desa-managed portal"
    static let pageHeader = "<!-- desa-managed portal"

    static func confPath(_ c: Config) -> String { c.nginx.sitesDir + "/_portal.conf" }
    static func pagePath(_ c: Config) -> String { c.portalRoot + "/index.html" }

    // MARK: state

    public func load(_ db: Database, _ d: DesiredState) throws -> Files? {
        guard d.config.portal.enabled else { return nil }
        return try Self.render(db, config: d.config, renderer: d.renderer, tenants: d.tenants, aliases: d.aliases, now: d.now)
    }

    /// The page and the server block from the state database as it is now.
    static func render(_ db: Database, config c: Config, renderer r: Renderer, tenants: [Tenant], aliases: [String: [String]],
                       now: Date) throws -> Files {
        let (page, key) = try Self.page(db, config: c, templates: r.fingerprint, tenants: tenants, aliases: aliases, now: now)
        var tls: [TLSServe] = []
        if c.tls.enabled {
            tls = CertStore.serving(CertStore.valid(try CertStore.records(db), config: c, now: now), member: member,
                                    names: [c.portalHost], config: c)
        }
        return Files(portal: page, key: key, conf: try conf(c, r, tls: tls))
    }

    static func withHeader(_ key: String, _ body: String) -> String {
        key + " body=" + bodyDigest(body) + " -->\n" + body
    }

    static func bodyDigest(_ body: String) -> String {
        SHA256.hash(data: Data(body.utf8)).prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    /// A page on disk made from `key`'s inputs and unaltered since: its first line is the key
    /// and the digest of what follows it.
    static func current(_ page: String?, key: String) -> Bool {
        guard let page, let nl = page.firstIndex(of: "\n") else { return false }
        let first = page[..<nl]
        guard first.hasPrefix(key + " body="), first.hasSuffix(" -->") else { return false }
        let digest = first.dropFirst(key.count + 6).dropLast(4)
        return digest == bodyDigest(String(page[page.index(after: nl)...]))
    }

    /// The page's facts and its key, its first line's start: `<!-- desa-managed portal health=N inputs=HEX`.
    /// N is the newest recorded change of health: a page written from older health never
    /// replaces a newer one (an apply planned before a sweep, written after it). HEX is what
    /// the page is made from: the same line means the same page.
    static func page(_ db: Database, config c: Config, templates: [UInt8], tenants: [Tenant], aliases: [String: [String]],
                     now: Date) throws -> (PortalPage, String) {
        let page = try PortalPage.load(db, config: c, tenants: tenants, aliases: aliases, now: now)
        let stamp = try Int.fetchOne(db, sql: "SELECT MAX(id) FROM health_event") ?? 0
        return (page, pageHeader + " health=\(stamp) inputs=\(page.digest(templates: templates))")
    }

    /// The server block: HTTPS for the names a certificate covers, a redirect to it on
    /// HTTP (challenges excepted), plain HTTP until then.
    static func conf(_ c: Config, _ r: Renderer, tls: [TLSServe]) throws -> String {
        let (script, style) = try PortalPage.inline(r)
        let base: [String: Any] = ["host": c.portalHost, "root": c.portalRoot, "acme_root": c.acmeRoot,
                                   "script_hash": PortalPage.cspHash(script), "style_hash": PortalPage.cspHash(style)]
        var blocks: [String] = []
        for s in tls {
            var ctx = base
            ctx["listen"] = c.tls.listen + " ssl http2"
            ctx["tls"] = ["certificate": s.certificate, "key": s.key,
                          "hsts_max_age": c.tls.hstsMaxAge > 0 ? "\(c.tls.hstsMaxAge)" : false] as [String: Any]
            blocks.append(try r.render("nginx/portal", ctx))
        }
        var plain = base
        plain["listen"] = c.nginx.listen
        if tls.isEmpty {
            blocks.append(try r.render("nginx/portal", plain))
        } else {
            plain["server_names"] = c.portalHost
            plain["https_port_suffix"] = c.tls.port == 443 ? "" : ":\(c.tls.port)"
            blocks.append(try r.render("nginx/redirect", plain))
        }
        return confHeader + "\n# Managed by desa: desactl apply rewrites this file; edit templates/nginx/portal.conf.mustache instead.\n"
            + blocks.joined(separator: "\n")
    }

    // MARK: plan

    func directories(_ c: Config) -> [DirSpec] {
        // nginx's workers pass through the state directory to a root kept in it.
        (c.portalRoot.hasPrefix(c.stateDir + "/") ? [DirSpec(path: c.stateDir, uid: 0, gid: 0, mode: 0o711)] : [])
            + [DirSpec(path: c.portalRoot, uid: 0, gid: 0, mode: 0o755)]
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        let c = d.config
        return Observation(stats: host.stats(directories(c).map(\.path)), conf: host.read(Self.confPath(c)), page: host.read(Self.pagePath(c)))
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        let c = d.config
        var out = CapabilityPlan()
        let nginx = ServiceSpec.nginx(c).name
        if let existing = seen.conf, !existing.hasPrefix(Self.confHeader + "\n") {
            throw DesaError(.conflict, "\(Self.confPath(c)) exists and is not desa's portal; move it away, or set portal.enabled = false")
        }
        // Not loaded (a plan made without the database): nothing to say.
        guard let loaded = d.state(of: Self.self) else { return out }
        if loaded != nil, let t = d.tenants.first(where: { t in
            t.primaryDomain(c) == c.portalHost || d.aliases[t.code, default: []].contains(c.portalHost)
        }) {
            // A village given the name before the portal reserved it.
            throw DesaError(.conflict, "\(c.portalHost), the portal's host, is village \(t.code)'s (\(t.slug)); set portal.host to another name, or portal.enabled = false")
        }
        guard let want = loaded else {
            // Off: what desa made goes; the directory stays (it may hold the operator's files).
            if seen.conf != nil {
                out.steps.append(Step(nil, "remove-config", .files, .managed(ManagedFile(path: Self.confPath(c), content: nil, service: nginx))))
            }
            if let page = seen.page, page.hasPrefix(Self.pageHeader) {
                out.steps.append(Step(nil, "remove-portal-page", .files, .custom(WritePortalPage(path: Self.pagePath(c), content: nil))))
            }
            return out
        }
        out.steps += Step.ensure(directories(c), nil, seen.stats)
        if !Self.current(seen.page, key: want.key) {
            out.steps.append(Step(nil, seen.page == nil ? "create-portal-page" : "update-portal-page", .files,
                                  .custom(WritePortalPage(path: Self.pagePath(c), content: try want.page(d.renderer)))))
        }
        if seen.conf != want.conf {
            out.steps.append(Step(nil, seen.conf == nil ? "create-config" : "update-config", .files,
                                  .managed(ManagedFile(path: Self.confPath(c), content: want.conf, service: nginx))))
        }
        return out
    }

    // MARK: facets

    public func reservedNames(_ c: Config) -> [ReservedName] {
        [ReservedName(slug: c.portalReservedSlug, domain: c.portalHost, why: "the regency's portal (portal.host)")]
    }

    /// The page is rendered again after every sweep and written only when it differs: a
    /// village's first check changes what the page says without being a change of state.
    public func healthRecorded(_ engine: Engine, _ changes: [HealthTransition]) {
        guard engine.config.portal.enabled else { return }
        do {
            try Self.refresh(engine)
        } catch {
            engine.logger.error("the portal's page could not be rewritten: \(Applier.message(error))")
        }
    }

    /// Rewrites the page from the state database now, if it changed and the portal has been
    /// applied (its directory exists). Returns whether it wrote.
    @discardableResult
    public static func refresh(_ engine: Engine) throws -> Bool {
        let c = engine.config
        guard c.portal.enabled, FileManager.default.fileExists(atPath: c.portalRoot) else { return false }
        let now = engine.now()
        let (page, key) = try engine.store.queue.read { db in
            try Self.page(db, config: c, templates: Renderer.fingerprint(config: c), tenants: try Tenant.order(Column("code")).fetchAll(db),
                          aliases: try Engine.aliases(db), now: now)
        }
        // After most sweeps nothing the page shows changed: its first line says so, and it is
        // neither rendered again nor are the templates compiled.
        if Self.firstLine(pagePath(c))?.hasPrefix(key + " body=") == true { return false }
        return try WritePortalPage(path: pagePath(c), content: withHeader(key, try page.render(try engine.renderer()))).write(c)
    }

    static func firstLine(_ path: String) -> String? {
        guard let f = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? f.close() }
        let head = (try? f.read(upToCount: 512)) ?? Data()
        return String(decoding: head.prefix { $0 != 0x0A }, as: UTF8.self)
    }
}

/// The portal's page written atomically (root's, 0644), or removed; under a lock of its
/// own, and never over a page written from newer health.
struct WritePortalPage: CustomEffect {
    var path: String
    var content: String?
    var subject: String { path }

    func run(_ context: ApplyContext) throws { try write(context.config) }

    @discardableResult
    func write(_ c: Config) throws -> Bool {
        let held = try StateLock(path: c.stateDir + "/portal.lock", timeout: 30)
        defer { withExtendedLifetime(held) {} }
        let existing = AtomicFiles.read(path)
        guard let content else {
            if existing?.hasPrefix(PortalCapability.pageHeader) == true { try FileManager.default.removeItem(atPath: path) }
            return true
        }
        if existing == content { return false }
        if let existing, Self.stamp(existing) > Self.stamp(content) { return false }
        try AtomicFiles.write([FileWrite(path: path, content: content, mode: 0o644)])
        return true
    }

    static func stamp(_ page: String) -> Int {
        let first = page.prefix { $0 != "\n" }
        guard let r = first.range(of: " health=") else { return -1 }
        return Int(first[r.upperBound...].prefix { $0.isNumber }) ?? -1
    }
}
