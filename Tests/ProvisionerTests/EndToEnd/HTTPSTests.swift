import Foundation
import Testing
@testable import Provisioner

/// HTTPS end to end: the real `desactl` against the sandbox's own pebble (Let's Encrypt's
/// test CA, rejecting 5% of nonces as it does by default) and pebble-challtestsrv, nginx and
/// php-fpm on loopback; every check is one a villager or an operator would make (curl and
/// openssl with this run's pebble root, the commands' own output). Each test has its own
/// ports in 24000–24999: pebble at P…P+3, HTTPS at P+10.
@Suite("HTTPS end to end against pebble", .serialized)
struct HTTPSTests {
    // MARK: issuance

    @Test("all 280 villages of Kab. Bandung and the portal get valid certificates in 3 orders and answer on HTTPS; HTTP redirects but for ACME challenges; PHP sees HTTPS=on")
    func bandungOnHTTPS() throws {
        let h = try SandboxHarness("https280", pebble: (port: 24000, httpsPort: 24010))
        defer { h.destroy() }
        let imported = try h.desactl("tenant", "import", Support.bandung)
        try #require(imported.ok, "\(imported.message)")
        let started = Date()
        let issued = try h.desactl("cert", "issue", "--all", "--json")
        let took = Date().timeIntervalSince(started)
        try #require(issued.ok, "\(issued.stdout.suffix(2000)) \(issued.stderr.suffix(2000))")
        let report = try object(issued)
        let orders = report["issued"] as? [[String: Any]] ?? []
        #expect(orders.count == 3, "\(orders)")
        // The villages' 280 names and the portal's host.
        #expect(orders.map { $0["names"] as? Int ?? 0 }.reduce(0, +) == 281)
        #expect((report["failed"] as? [Any])?.isEmpty == true && (report["held_out"] as? [Any])?.isEmpty == true, "\(report)")
        print("HTTPSTests: 280 villages issued in \(orders.count) orders, \(String(format: "%.1f", took)) s")

        // The orders the CA saw, as the ledger and the audit table count them.
        let budget = try object(try h.desactl("cert", "budget", "--json"))
        #expect((budget["orders"] as? [String: Any])?["used"] as? Int == 3, "\(budget)")
        let domain = (budget["domains"] as? [[String: Any]] ?? []).first { $0["domain"] as? String == "bandungkab.go.id" }
        #expect(domain?["used"] as? Int == 3, "\(budget)")
        let audit = try StateStore(path: try h.config().databasePath).audit(limit: 100)
        #expect(audit.filter { $0.op == "cert-issue" && $0.outcome == "ok" }.count == 3)
        #expect(!audit.contains { $0.op == "cert-fail" })
        // It ran under pebble's default nonce rejection, and no order had to be repeated for it.
        #expect(Support.read(h.dir + "/logs/pebble.log").contains("Configured to reject 5% of good nonces"))

        // Every village on HTTPS, trusted through this run's root only.
        let domains = try h.tenants().map { $0["domain"] as! String }
        try #require(domains.count == 280)
        let https = try h.curl("https", domains, cacert: h.pebbleRoot)
        let notServed = domains.filter { https[$0]?.code != "200" }
        let portal = try h.config().portalHost
        #expect(try h.curl("https", [portal], cacert: h.pebbleRoot)[portal]?.code == "200", "the portal is not on HTTPS")
        #expect(notServed.isEmpty, "\(notServed.count) villages not on HTTPS, e.g. \(notServed.prefix(3).map { "\($0): \(https[$0] ?? ("none", ""))" }) \(https.error)")

        // Each chain leads to pebble's root.
        let records = try h.certRecords()
        #expect(records.keys.sorted() == ["b001", "b002", "b003"])
        for r in records.values.sorted(by: { $0.id < $1.id }) {
            let v = try h.verify(chain: r.chainPath(try h.config()), root: h.pebbleRoot, name: r.names.first ?? "")
            #expect(v.ok && v.stdout.contains(": OK"), "\(r.id): \(v.message)")
        }

        // HTTP: a redirect to the same URL on HTTPS, but for ACME challenges.
        let http = try h.curl("http", domains, path: "/pengumuman?id=7")
        let notRedirected = domains.filter { http[$0]?.code != "301" || http[$0]?.redirect != "https://\($0):24010/pengumuman?id=7" }
        #expect(notRedirected.isEmpty, "\(notRedirected.count) not redirected, e.g. \(notRedirected.prefix(3).map { "\($0): \(http[$0] ?? ("none", ""))" })")
        let token = "desa-probe-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let challenge = try h.config().acmeRoot + "/.well-known/acme-challenge/" + token
        try AtomicFiles.write([FileWrite(path: challenge, content: "key-authorization-\(token)", mode: 0o644)])
        defer { unlink(challenge) }
        for d in [domains[0], domains[279]] {
            let r = try h.get(d, "/.well-known/acme-challenge/" + token)
            #expect(r.status == 200 && r.body == "key-authorization-\(token)", "\(d): \(r.status) \(r.body.prefix(200))")
        }

        // PHP behind HTTPS knows it.
        let t = try h.tenants()[0]
        let slug = t["slug"] as! String, code = t["code"] as! String
        let uid = try #require(try h.users().first { $0.name == h.prefix + code.filter(\.isNumber) }?.uid)
        try h.installPHP(slug: slug, uid: uid, file: "scheme.php", "<?php echo ($_SERVER['HTTPS'] ?? 'unset'), ' ', $_SERVER['SERVER_PORT'];")
        let php = try h.fetch("https", domains[0], "/scheme.php", cacert: h.pebbleRoot)
        #expect(php.ok && php.stdout == "on 24010", "\(php.stdout.prefix(300)) \(php.stderr)")
    }

    @Test("one village more when the bundles are full: one order for it, the full bundles are not reissued")
    func oneVillageMore() throws {
        let h = try SandboxHarness("https201", pebble: (port: 24020, httpsPort: 24030))
        defer { h.destroy() }
        try h.portalOff()
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(200)).ok)
        let first = try object(try h.desactl("cert", "issue", "--all", "--json"))
        #expect(ids(first["issued"]) == ["b001", "b002"], "\(first)")
        let before = try h.certRecords()
        let v = try village(201)
        let created = try h.desactl("tenant", "create", v.code, "--name", v.name, "--district", v.district)
        try #require(created.ok, "\(created.message)")

        let second = try h.desactl("cert", "issue", "--all", "--json")
        try #require(second.ok, "\(second.stdout.suffix(1500)) \(second.stderr)")
        let report = try object(second)
        let issued = report["issued"] as? [[String: Any]] ?? []
        #expect(ids(issued) == ["b003"] && issued.first?["names"] as? Int == 1, "\(issued)")
        #expect(((report["plan"] as? [String: Any])?["orders"] as? [Any])?.count == 1, "\(report)")
        let after = try h.certRecords()
        for id in ["b001", "b002"] {
            #expect(after[id]?.serial == before[id]?.serial && after[id]?.names == before[id]?.names, "\(id) was reissued")
            let dirs = try FileManager.default.contentsOfDirectory(atPath: try h.config().certDir + "/" + id)
            #expect(dirs == [before[id]?.serial ?? ""], "\(id): \(dirs)")
        }
        let newcomer = try h.domain(of: v.code)
        #expect(after["b003"]?.names == [newcomer], "\(after["b003"]?.names ?? [])")
        let budget = try object(try h.desactl("cert", "budget", "--json"))
        #expect((budget["orders"] as? [String: Any])?["used"] as? Int == 3, "\(budget)")
        let domains = try h.tenants().map { $0["domain"] as! String }
        let https = try h.curl("https", domains, cacert: h.pebbleRoot)
        #expect(domains.count == 201 && domains.allSatisfy { https[$0]?.code == "200" }, "\(https.error)")
    }

    @Test("an alias that does not resolve here is held out with the CA's reason and stays on HTTP; once it resolves it is retried after the backoff")
    func unresolvableAlias() throws {
        let h = try SandboxHarness("httpsalias", pebble: (port: 24040, httpsPort: 24050))
        defer { h.destroy() }
        try h.portalOff()
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(3)).ok)
        let t = try h.tenants()[0]
        let slug = t["slug"] as! String, primary = t["domain"] as! String
        let alias = "gone-x.desa.id"
        try h.challtestsrv("add-a", ["host": alias + ".", "addresses": ["127.0.0.2"]])
        let added = try h.desactl("tenant", "alias", "add", slug, alias)
        try #require(added.ok, "\(added.message)")

        let failedAt = Date()
        let r = try h.desactl("cert", "issue", "--all", "--json")
        let failedBy = Date()
        try #require(r.ok, "\(r.stdout.suffix(1500)) \(r.stderr)")
        let report = try object(r)
        let issued = report["issued"] as? [[String: Any]] ?? []
        #expect(ids(issued) == ["b001"] && issued.first?["names"] as? Int == 3, "\(issued)")
        let held = report["held_out"] as? [[String: Any]] ?? []
        #expect(held.map { $0["name"] as? String } == [alias], "\(held)")

        // What the operator sees: the alias held out with the CA's reason; the tenant's primary on HTTPS.
        let listing = try #require(try h.certList().first { $0["slug"] as? String == slug })
        let heldOut = listing["held_out"] as? [[String: Any]] ?? []
        let reason = heldOut.first?["reason"] as? String ?? ""
        #expect(heldOut.map { $0["name"] as? String } == [alias] && heldOut.first?["failures"] as? Int == 1, "\(listing)")
        #expect(reason.contains("127.0.0.2") && reason.lowercased().contains("connection refused"), "the CA's reason: \(reason)")
        #expect(listing["uncovered"] as? [String] == [alias], "\(listing)")
        let https = try h.curl("https", [primary, alias], cacert: h.pebbleRoot)
        #expect(https[primary]?.code == "200", "\(https.error)")
        #expect(https[alias]?.code == "000", "the alias has no certificate yet, HTTPS must not pass: \(https[alias] ?? ("none", ""))")
        let plain = try h.get(alias)
        #expect(plain.status == 200, "the alias on plain HTTP: \(plain.status)")
        #expect(try h.get(primary).status == 301)

        // It resolves here again: a retry is queued for when the backoff ends (1 h after the failure).
        try h.challtestsrv("clear-a", ["host": alias + "."])   // back to the default, 127.0.0.1
        let plan = try object(try h.desactl("cert", "plan", "--json"))
        let retry = try #require((plan["orders"] as? [[String: Any]] ?? []).first { $0["id"] as? String == "retry:" + alias }, "\(plan)")
        let at = try #require(Timestamp.parse(retry["at"] as? String ?? ""))
        #expect(retry["queued"] as? Bool == true && (retry["delayed_by"] as? String ?? "").contains("retry backoff"), "\(retry)")
        #expect(at >= failedAt.addingTimeInterval(3600 - 1) && at <= failedBy.addingTimeInterval(3600 + 1), "retry at \(retry["at"] ?? "")")
        let early = try object(try h.desactl("cert", "issue", "--all", "--json"))
        #expect(ids(early["issued"]).isEmpty, "retried before the backoff ended: \(early)")

        // With the clock past the backoff, it goes, and the alias is on HTTPS.
        let later = try h.desactl(now: at.addingTimeInterval(60), "cert", "issue", "--all", "--json")
        try #require(later.ok, "\(later.stdout.suffix(1500)) \(later.stderr)")
        let retried = try object(later)
        #expect(ids(retried["issued"]) == ["n-" + alias], "\(retried)")
        #expect((retried["held_out"] as? [Any])?.isEmpty == true, "\(retried)")
        let now = try #require(try h.certList().first { $0["slug"] as? String == slug })
        #expect((now["uncovered"] as? [String])?.isEmpty == true && (now["held_out"] as? [Any])?.isEmpty == true, "\(now)")
        let both = try h.curl("https", [primary, alias], cacert: h.pebbleRoot)
        #expect(both[primary]?.code == "200" && both[alias]?.code == "200", "\(both.error)")
        #expect(try h.get(alias).status == 301)
    }

    @Test("a budget of 2 certificates per domain: 2 orders now, the third queued until a token comes back; cert budget shows it spent")
    func smallBudget() throws {
        let h = try SandboxHarness("httpsbudget", pebble: (port: 24060, httpsPort: 24070))
        defer { h.destroy() }
        try h.portalOff()
        try h.setTLS(["certificates_per_domain": "2"])
        try #require(try h.desactl("tenant", "import", Support.bandung).ok)
        let refill = Budget.Limit(2, per: 7 * 86400).refillInterval   // 3.5 days

        let t0 = Date()
        let plan = try object(try h.desactl("cert", "plan", "--json"))
        let t1 = Date()
        let orders = plan["orders"] as? [[String: Any]] ?? []
        #expect(orders.filter { $0["queued"] as? Bool == false }.map { $0["id"] as? String } == ["b001", "b002"], "\(orders)")
        let queued = orders.filter { $0["queued"] as? Bool == true }
        #expect(queued.map { $0["id"] as? String } == ["b003"], "\(orders)")
        let at = Timestamp.parse(queued.first?["at"] as? String ?? "") ?? .distantPast
        #expect(at >= t0.addingTimeInterval(refill - 1) && at <= t1.addingTimeInterval(refill + 1), "b003 queued until \(Timestamp.format(at))")
        #expect((queued.first?["delayed_by"] as? String ?? "").contains("bandungkab.go.id"), "\(queued)")
        let text = try h.desactl("cert", "plan").stdout
        let line = text.split(separator: "\n").first { $0.hasPrefix("issue b003: 80 names, 80 tenants, queued until ") }.map(String.init) ?? ""
        let shown = Timestamp.parse(String(line.dropFirst("issue b003: 80 names, 80 tenants, queued until ".count).prefix(20))) ?? .distantPast
        #expect(abs(shown.timeIntervalSince(at)) <= 2 && line.hasSuffix("(new certificates per registered domain bandungkab.go.id)"), "\(text)")

        let i0 = Date()
        let r = try h.desactl("cert", "issue", "--all", "--json")
        let i1 = Date()
        try #require(r.ok, "\(r.stdout.suffix(1500)) \(r.stderr)")
        let report = try object(r)
        #expect(ids(report["issued"]) == ["b001", "b002"], "\(report)")
        let stillQueued = ((report["plan"] as? [String: Any])?["orders"] as? [[String: Any]] ?? []).filter { $0["queued"] as? Bool == true }
        #expect(stillQueued.map { $0["id"] as? String } == ["b003"], "\(report)")
        let budget = try object(try h.desactl("cert", "budget", "--json"))
        let domain = (budget["domains"] as? [[String: Any]] ?? []).first { $0["domain"] as? String == "bandungkab.go.id" } ?? [:]
        #expect(domain["used"] as? Int == 2 && domain["remaining"] as? Int == 0 && domain["capacity"] as? Int == 2
                && domain["planned"] as? Int == 1, "\(budget)")
        let refillAt = Timestamp.parse(domain["next_refill"] as? String ?? "") ?? .distantPast
        #expect(refillAt >= i0.addingTimeInterval(refill - 1) && refillAt <= i1.addingTimeInterval(refill + 1), "next refill \(domain)")
        #expect((budget["orders"] as? [String: Any])?["used"] as? Int == 2, "\(budget)")

        // 200 villages on HTTPS, the last 80 still on plain HTTP.
        let list = try h.certList()
        let uncovered = list.filter { !(($0["uncovered"] as? [String]) ?? []).isEmpty }
        #expect(list.count == 280 && uncovered.count == 80, "\(uncovered.count) uncovered")
        let last = try #require(list.last?["names"] as? [String]).first ?? ""
        #expect(try h.get(last).status == 200)
        #expect(try h.get(list[0]["names"].flatMap { ($0 as? [String])?.first } ?? "").status == 301)
    }

    // MARK: renewal

    @Test("past two thirds of their lifetime, renew --due renews exactly the older bundles, and their new certificates are served")
    func renewalOfTheDueOnes() throws {
        let h = try SandboxHarness("httpsrenew", pebble: (port: 24080, httpsPort: 24090))
        defer { h.destroy() }
        try h.portalOff()
        try h.setTLS(["bundle_size": "2"])
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(4)).ok)
        #expect(ids(try object(try h.desactl("cert", "issue", "--all", "--json"))["issued"]) == ["b001", "b002"])
        // The newer bundle comes a few seconds later (pebble dates certificates by its own clock).
        let older = try h.certRecords()
        let newest = [older["b001"]?.notBefore, older["b002"]?.notBefore].compactMap { $0 }.max() ?? Date()
        let wait = newest.addingTimeInterval(3).timeIntervalSinceNow
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
        let v = try village(5)
        try #require(try h.desactl("tenant", "create", v.code, "--name", v.name, "--district", v.district).ok)
        #expect(ids(try object(try h.desactl("cert", "issue", "--all", "--json"))["issued"]) == ["b003"])

        let before = try h.certRecords()
        func due(_ id: String) -> Date {
            guard let nb = before[id]?.notBefore, let na = before[id]?.notAfter else { return .distantFuture }
            return nb.addingTimeInterval(na.timeIntervalSince(nb) * 2 / 3)
        }
        let moved = max(due("b001"), due("b002")).addingTimeInterval(1)
        try #require(due("b003") > moved, "b003 is not newer than the others")
        let leaves = try Dictionary(uniqueKeysWithValues: ["b001", "b002", "b003"].map { ($0, try h.servedLeaf(before[$0]?.names.first ?? "")) })
        for (id, leaf) in leaves { #expect(leaf == h.leaf(ofChain: before[id]!.chainPath(try h.config())), "\(id) not served before") }

        let notYet = try object(try h.desactl("cert", "renew", "--due", "--json"))
        #expect(ids(notYet["issued"]).isEmpty, "renewed before due: \(notYet)")
        let plan = try object(try h.desactl(now: moved, "cert", "plan", "--json"))
        #expect((plan["orders"] as? [[String: Any]] ?? []).map { "\($0["purpose"] ?? "") \($0["id"] ?? "")" } == ["renewal b001", "renewal b002"], "\(plan)")
        let r = try h.desactl(now: moved, "cert", "renew", "--due", "--json")
        try #require(r.ok, "\(r.stdout.suffix(1500)) \(r.stderr)")
        let report = try object(r)
        let issued = report["issued"] as? [[String: Any]] ?? []
        #expect(ids(issued) == ["b001", "b002"] && issued.allSatisfy { $0["renewal"] as? Bool == true }, "\(issued)")

        let after = try h.certRecords()
        for id in ["b001", "b002"] {
            #expect(after[id]?.serial != before[id]?.serial && after[id]?.names == before[id]?.names, "\(id) not renewed")
            let served = try h.servedLeaf(after[id]?.names.first ?? "")
            #expect(served == h.leaf(ofChain: after[id]!.chainPath(try h.config())) && served != leaves[id], "\(id): the new certificate is not served")
        }
        #expect(after["b003"]?.serial == before["b003"]?.serial)
        #expect(try h.servedLeaf(after["b003"]?.names.first ?? "") == leaves["b003"])
        let domains = try h.tenants().map { $0["domain"] as! String }
        let https = try h.curl("https", domains, cacert: h.pebbleRoot)
        #expect(domains.count == 5 && domains.allSatisfy { https[$0]?.code == "200" }, "\(https.error)")
    }

    // MARK: bad input and faults: a clear error, a failing exit status, and the certificate serving keeps serving

    @Test("cert import refuses a key that does not match, an expired certificate, an incomplete chain and one for other names; a valid one is served")
    func certificateImports() throws {
        let h = try SandboxHarness("httpsimport", pebble: (port: 24100, httpsPort: 24110))
        defer { h.destroy() }
        let (slug, name, acmeLeaf) = try h.servingOneVillage()
        let now = Date()
        let pki = try LocalPKI(dir: h.dir + "/pki", now: now)
        try h.setTLS(["trusted_roots": "[\"\(h.dir)/pebble/listener.pem\", \"\(pki.root.cert)\"]"])
        let good = try pki.sign(commonName: name, names: [name], from: now.addingTimeInterval(-3600), to: now.addingTimeInterval(10 * 86400))
        let expired = try pki.sign(commonName: name, names: [name], from: now.addingTimeInterval(-40 * 86400), to: now.addingTimeInterval(-10 * 86400))
        let elsewhere = try pki.sign(commonName: "tetangga.bandungkab.go.id", names: ["tetangga.bandungkab.go.id"],
                                     from: now.addingTimeInterval(-3600), to: now.addingTimeInterval(10 * 86400))
        let cases: [(what: String, cert: String, key: String, says: String)] = [
            ("a key that does not match", try pki.bundle("good.pem", [good.cert, pki.intermediate.cert]), elsewhere.key, "the key does not match the certificate"),
            ("an expired certificate", try pki.bundle("expired.pem", [expired.cert, pki.intermediate.cert]), expired.key, "the certificate expired on "),
            ("an incomplete chain", good.cert, good.key, "the chain does not lead to a trusted root"),
            ("a certificate for other names", try pki.bundle("elsewhere.pem", [elsewhere.cert, pki.intermediate.cert]), elsewhere.key,
             "the certificate does not cover \(name)"),
        ]
        for c in cases {
            let r = try h.desactl("cert", "import", slug, c.cert, c.key)
            #expect(!r.ok && r.stderr.contains(c.says), "\(c.what): exit \(r.status), \(r.message)")
            #expect(try h.servedLeaf(name) == acmeLeaf, "\(c.what): the ACME certificate stopped serving")
        }
        let https = try h.curl("https", [name], cacert: h.pebbleRoot)
        #expect(https[name]?.code == "200", "\(https.error)")

        let r = try h.desactl("cert", "import", slug, try pki.bundle("good.pem", [good.cert, pki.intermediate.cert]), good.key)
        #expect(r.ok, "\(r.message)")
        #expect(try h.servedLeaf(name) == h.leaf(ofChain: good.cert), "the imported certificate is not served")
        let local = try h.curl("https", [name], cacert: pki.root.cert)
        #expect(local[name]?.code == "200", "\(local.error)")
        let listing = try h.certList().first { $0["slug"] as? String == slug }
        let sources = (listing?["certificates"] as? [[String: Any]] ?? []).map { "\($0["id"] ?? "") \($0["source"] ?? "")" }
        #expect(sources.contains { $0.hasPrefix("import-") && $0.hasSuffix(" import") }, "\(sources)")
    }

    @Test("the CA down: cert renew --force fails naming the CA's URL, and the old certificate keeps serving")
    func caDown() throws {
        let h = try SandboxHarness("httpscadown", pebble: (port: 24120, httpsPort: 24130))
        defer { h.destroy() }
        let (slug, name, leaf) = try h.servingOneVillage()
        let pid = try #require(pid_t(Support.read(h.dir + "/run/pebble.pid").trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGTERM)
        for _ in 0..<250 where kill(pid, 0) == 0 { usleep(20_000) }
        try #require(kill(pid, 0) != 0, "pebble did not stop")

        let r = try h.desactl("cert", "renew", "--force", slug)
        #expect(!r.ok, "exit 0 with the CA down: \(r.stdout)")
        #expect((r.stdout + r.stderr).contains("https://127.0.0.1:24120/dir") && r.stderr.contains("Connection refused"), "\(r.stdout) \(r.stderr)")
        // The operator who looks later sees it too: on the certificate, and in the audit table.
        try h.expectFailureNoted(slug: slug, saying: "https://127.0.0.1:24120/dir")
        #expect(try h.servedLeaf(name) == leaf)
        #expect(try h.curl("https", [name], cacert: h.pebbleRoot)[name]?.code == "200")
    }

    @Test("a CA answering garbage: cert renew --force fails saying so, and the old certificate keeps serving")
    func caAnsweringGarbage() throws {
        let h = try SandboxHarness("httpsgarbage", pebble: (port: 24140, httpsPort: 24150))
        defer { h.destroy() }
        let (slug, name, leaf) = try h.servingOneVillage()
        // openssl's own TLS server, with the certificate the sandbox trusts for its CA, answers
        // every request with an HTML status page.
        let garbage = try Spawned(["/usr/bin/openssl", "s_server", "-accept", "127.0.0.1:24145", "-cert", h.dir + "/pebble/listener.pem",
                                   "-key", h.dir + "/pebble/listener.key", "-www"], environment: ["PATH": "/usr/bin:/bin"])
        defer { garbage.stop() }
        for _ in 0..<250 where !Processes.listensOnLoopback(port: 24145) { usleep(20_000) }
        try #require(Processes.listensOnLoopback(port: 24145), "openssl s_server did not start")
        try h.setTLS(["directory": "\"https://127.0.0.1:24145/dir\""])

        let r = try h.desactl("cert", "renew", "--force", slug)
        #expect(!r.ok, "exit 0 with a CA answering garbage: \(r.stdout)")
        #expect((r.stdout + r.stderr).contains("the ACME server at https://127.0.0.1:24145/dir sent a directory that is not valid"), "\(r.stdout) \(r.stderr)")
        // The operator who looks later sees it too: on the certificate, and in the audit table.
        try h.expectFailureNoted(slug: slug, saying: "https://127.0.0.1:24145/dir")
        #expect(try h.servedLeaf(name) == leaf)
        #expect(try h.curl("https", [name], cacert: h.pebbleRoot)[name]?.code == "200")
    }

    @Test("a full disk where the renewed certificate goes: cert renew --force fails saying so, and the old certificate keeps serving")
    func fullDisk() throws {
        let h = try SandboxHarness("httpsfull", pebble: (port: 24160, httpsPort: 24170))
        defer { h.destroy() }
        let (slug, name, leaf) = try h.servingOneVillage()
        let record = try #require(try h.certRecords()["b001"])
        let base = try h.config().certDir + "/b001", kept = h.dir + "/b001-kept"
        try FileManager.default.copyItem(atPath: base, toPath: kept)
        // A 16 KiB tmpfs over the bundle's directory, with the serving pair copied back in and
        // the rest filled.
        let mount = try h.runner.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", base])
        try #require(mount.ok, "mount: \(mount.message)")
        defer { _ = try? h.runner.run(["/usr/bin/umount", base]) }
        try FileManager.default.copyItem(atPath: kept + "/" + record.serial!, toPath: base + "/" + record.serial!)
        _ = try h.runner.run(["/usr/bin/dd", "if=/dev/zero", "of=" + base + "/filler", "bs=4096"])
        var fs = statvfs()
        try #require(statvfs(base, &fs) == 0 && fs.f_bavail == 0, "the tmpfs is not full")
        #expect(try h.servedLeaf(name) == leaf)

        let r = try h.desactl("cert", "renew", "--force", slug)
        #expect(!r.ok, "exit 0 with the disk full: \(r.stdout)")
        #expect(r.stdout.contains("FAILED b001") && (r.stdout + r.stderr).contains("No space left on device"), "\(r.stdout) \(r.stderr)")
        #expect(try h.certRecords()["b001"]?.serial == record.serial)
        try h.expectFailureNoted(slug: slug, saying: "No space left on device")
        #expect(try h.servedLeaf(name) == leaf)
        #expect(try h.curl("https", [name], cacert: h.pebbleRoot)[name]?.code == "200")
        #expect(try h.nginxTest().ok)
    }

    // MARK: helpers

    func object(_ r: ProcessResult) throws -> [String: Any] {
        try #require(try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                     "not a JSON object (exit \(r.status)): \(r.stdout.prefix(800)) \(r.stderr.prefix(800))")
    }

    func ids(_ issued: Any?) -> [String] {
        (issued as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }.sorted()
    }

    /// The `n`th village of the Kab. Bandung list (1-based).
    func village(_ n: Int) throws -> (code: String, name: String, district: String) {
        let lines = Support.read(Support.bandung).split(separator: "\n")
        let f = lines[n].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        return (f[0], f[1], f[3])
    }
}

/// curl's answer per name: the status code (`000` when no HTTP answer came, a TLS failure
/// among them) and the redirect's target; `error` holds curl's complaints.
struct CurlResults {
    var byName: [String: (code: String, redirect: String)]
    var error: String
    subscript(_ name: String) -> (code: String, redirect: String)? { byName[name] }
}

extension SandboxHarness {
    /// One curl run over `names` (each resolved to 127.0.0.1 on the sandbox's port for
    /// `scheme`), trusting only `cacert`.
    func curl(_ scheme: String, _ names: [String], path: String = "/", cacert: String? = nil) throws -> CurlResults {
        let port = scheme == "https" ? pebble!.httpsPort : self.port
        var config = ""
        for n in names {
            config += "resolve = \"\(n):\(port):127.0.0.1\"\nurl = \"\(scheme)://\(n):\(port)\(path)\"\noutput = \"/dev/null\"\n"
        }
        let file = dir + "/curl-\(UInt32.random(in: 0...UInt32.max)).cfg"
        try AtomicFiles.write([FileWrite(path: file, content: config, mode: 0o600)])
        defer { unlink(file) }
        var argv = ["/usr/bin/curl", "-sS", "--max-time", "10", "-K", file, "-w", "%{url_effective} %{http_code} %{redirect_url}\n"]
        if let cacert { argv += ["--cacert", cacert] }
        let r = try runner.run(argv)
        var out: [String: (code: String, redirect: String)] = [:]
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 2, let host = URL(string: f[0])?.host else { continue }
            out[host] = (f[1], f.count > 2 ? f[2] : "")
        }
        return CurlResults(byName: out, error: String(r.stderr.prefix(1000)))
    }

    /// One request's body with curl.
    func fetch(_ scheme: String, _ name: String, _ path: String, cacert: String) throws -> ProcessResult {
        let port = scheme == "https" ? pebble!.httpsPort : self.port
        return try runner.run(["/usr/bin/curl", "-sS", "--fail", "--max-time", "10", "--cacert", cacert,
                               "--resolve", "\(name):\(port):127.0.0.1", "\(scheme)://\(name):\(port)\(path)"])
    }

    /// The leaf certificate nginx presents for `name` (its PEM, whitespace dropped).
    func servedLeaf(_ name: String) throws -> String {
        let r = try runner.run(["/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:\(pebble!.httpsPort)", "-servername", name])
        return Self.pemBlocks(r.stdout).first ?? "none served: \(r.stderr.prefix(300))"
    }

    /// The first certificate of a PEM file (whitespace dropped).
    func leaf(ofChain path: String) -> String { Self.pemBlocks(Support.read(path)).first ?? "none in \(path)" }

    static func pemBlocks(_ text: String) -> [String] {
        var out: [String] = [], rest = Substring(text)
        while let a = rest.range(of: "-----BEGIN CERTIFICATE-----"), let b = rest.range(of: "-----END CERTIFICATE-----", range: a.upperBound..<rest.endIndex) {
            out.append(String(rest[a.lowerBound..<b.upperBound]).filter { !$0.isWhitespace })
            rest = rest[b.upperBound...]
        }
        return out
    }

    /// `openssl verify` of a chain file's leaf, with the rest as intermediates, against `root`
    /// only, for `name`.
    func verify(chain path: String, root: String, name: String) throws -> ProcessResult {
        let text = Support.read(path)
        var pems: [String] = [], rest = Substring(text)
        while let a = rest.range(of: "-----BEGIN CERTIFICATE-----"), let b = rest.range(of: "-----END CERTIFICATE-----", range: a.upperBound..<rest.endIndex) {
            pems.append(String(rest[a.lowerBound..<b.upperBound]) + "\n")
            rest = rest[b.upperBound...]
        }
        let leaf = dir + "/verify-leaf.pem", others = dir + "/verify-rest.pem"
        try AtomicFiles.write([FileWrite(path: leaf, content: pems.first ?? ""), FileWrite(path: others, content: pems.dropFirst().joined())])
        return try runner.run(["/usr/bin/openssl", "verify", "-purpose", "sslserver", "-verify_hostname", name,
                               "-CAfile", root, "-untrusted", others, leaf])
    }

    /// The certificates as the state database records them, by id.
    func certRecords() throws -> [String: CertRecord] {
        let store = try StateStore(path: try config().databasePath)
        return Dictionary(uniqueKeysWithValues: try store.queue.read { try CertStore.records($0) }.map { ($0.id, $0) })
    }

    /// `cert list` shows the failure as the last error of the tenant's certificate, and the
    /// audit table has a failed `cert-fail` row saying the same.
    func expectFailureNoted(slug: String, saying: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let listing = try certList().first { $0["slug"] as? String == slug } ?? [:]
        let errors = (listing["certificates"] as? [[String: Any]] ?? []).compactMap { $0["last_error"] as? String }
        #expect(errors.contains { $0.contains(saying) }, "cert list shows no error saying \(saying): \(listing)", sourceLocation: sourceLocation)
        let audit = try StateStore(path: try config().databasePath).audit(limit: 20)
        #expect(audit.contains { $0.op == "cert-fail" && $0.outcome == "failed" && $0.detail.contains(saying) },
                "no cert-fail audit row says \(saying): \(audit.map { "\($0.op) \($0.target) \($0.outcome) \($0.detail)" })", sourceLocation: sourceLocation)
    }

    func certList() throws -> [[String: Any]] {
        let r = try desactl("cert", "list", "--json")
        return try #require(try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]], "cert list: \(r.message)")
    }

    func domain(of code: String) throws -> String {
        try #require(try tenants().first { $0["code"] as? String == code }?["domain"] as? String)
    }

    /// Two villages with a certificate from pebble: the first one's slug, name and served leaf.
    func servingOneVillage() throws -> (slug: String, name: String, leaf: String) {
        try #require(try desactl("tenant", "import", try bandungSubset(2)).ok)
        let r = try desactl("cert", "issue", "--all")
        try #require(r.ok, "\(r.stdout) \(r.stderr)")
        let t = try tenants()[0]
        let name = t["domain"] as! String
        let leaf = try servedLeaf(name)
        try #require(leaf == self.leaf(ofChain: try #require(try certRecords()["b001"]).chainPath(try config())), "b001 is not served")
        return (t["slug"] as! String, name, leaf)
    }

    /// A PHP file in the tenant's public directory, owned by the tenant (as it would upload it).
    func installPHP(slug: String, uid: Int, file: String, _ code: String) throws {
        let path = dir + "/srv/\(slug)/public/" + file
        try code.write(toFile: path, atomically: false, encoding: .utf8)
        chown(path, uid_t(uid), try Users.gid(ofGroup: "www-data"))
        chmod(path, 0o640)
    }

    /// A request to the sandbox's pebble-challtestsrv management API (`add-a`, `clear-a`).
    func challtestsrv(_ endpoint: String, _ body: [String: Any]) throws {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
        let r = try runner.run(["/usr/bin/curl", "-sS", "--fail", "--max-time", "5", "-d", json,
                                "http://127.0.0.1:\(pebble!.port + 3)/\(endpoint)"])
        try #require(r.ok, "challtestsrv \(endpoint): \(r.message)")
    }
}
