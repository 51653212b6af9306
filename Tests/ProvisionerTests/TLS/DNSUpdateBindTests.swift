import Foundation
import Testing
@testable import Provisioner

/// The dynamic update client against a real BIND on loopback (one named per test, each on
/// its own port in 15053–15069).
@Suite("DNS updates against BIND")
struct DNSUpdateBindTests {
    static let name = "_acme-challenge.cileunyi-kulon.bandungkab.go.id"
    static let value1 = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    static let value2 = "B2o9Cuu1-6aDrQlGGwvNrlsz1lsX0iOjV5hVFtOo2Fk"

    @Test("a TXT record is added, seen by dig, and deleted; deleting one value keeps the other")
    func addAndDelete() throws {
        let bind = try BindHarness(port: 15053)
        defer { bind.stop() }
        let client = try DNSUpdateClient(server: bind.server, key: bind.key, zone: "bandungkab.go.id", timeout: .seconds(3))

        try client.addTXT(name: Self.name, value: Self.value1, ttl: 60)
        #expect(try bind.txt(Self.name) == [Self.value1])
        #expect(try client.queryTXT(name: Self.name) == [Self.value1])

        try client.addTXT(name: Self.name, value: Self.value2, ttl: 60)
        #expect(try bind.txt(Self.name) == [Self.value1, Self.value2].sorted())

        try client.deleteTXT(name: Self.name, value: Self.value1)
        #expect(try bind.txt(Self.name) == [Self.value2])
        #expect(try client.queryTXT(name: Self.name) == [Self.value2])

        try client.deleteTXT(name: Self.name, value: Self.value2)
        #expect(try bind.txt(Self.name) == [])
        #expect(try client.queryTXT(name: Self.name) == [])
        // Deleting what is not there is not an error (RFC 2136 §3.4.2.4: ignored).
        try client.deleteTXT(name: Self.name, value: Self.value2)
        // The wildcard A still answers for the village itself.
        #expect(try bind.dig("cileunyi-kulon.bandungkab.go.id", "A") == ["127.0.0.1"])
        #expect(try bind.dig("cileunyi-kulon.desa.id", "A") == ["127.0.0.1"])
    }

    @Test("records written by BIND's nsupdate and by desa are the same records, both ways")
    func interoperatesWithNsupdate() throws {
        let bind = try BindHarness(port: 15054)
        defer { bind.stop() }
        let client = try DNSUpdateClient(server: bind.server, key: bind.key, timeout: .seconds(3))
        let long = String(repeating: "x", count: 300)   // two character-strings: 255 + 45

        let added = try bind.nsupdate(["update add \(Self.name) 60 TXT \"\(Self.value1)\""])
        #expect(added.ok, "\(added.message)")
        #expect(try client.queryTXT(name: Self.name) == [Self.value1])
        try client.deleteTXT(name: Self.name, value: Self.value1)
        #expect(try bind.txt(Self.name) == [])

        try client.addTXT(name: Self.name, value: long)
        #expect(try bind.txt(Self.name) == [long])
        let deleted = try bind.nsupdate(["update delete \(Self.name) TXT \"\(String(long.prefix(255)))\" \"\(String(long.dropFirst(255)))\""])
        #expect(deleted.ok, "\(deleted.message)")
        #expect(try bind.txt(Self.name) == [])
    }

    @Test("a wrong secret, an unknown key name and a key file others can read are refused clearly")
    func badKeys() throws {
        let bind = try BindHarness(port: 15055)
        defer { bind.stop() }

        let wrongSecret = try TSIGKey(name: bind.key.name, secret: Array(repeating: 7, count: 32))
        let a = try DNSUpdateClient(server: bind.server, key: wrongSecret, zone: "bandungkab.go.id", timeout: .seconds(3))
        let e1 = try #require(throws: DesaError.self) { try a.addTXT(name: Self.name, value: Self.value1) }
        #expect(e1.message.contains("refused the key desa-acme"), "\(e1.message)")
        #expect(e1.message.contains("BADSIG"), "\(e1.message)")
        #expect(e1.message.contains(Self.name), "\(e1.message)")

        let unknown = try TSIGKey(name: "nobody", secret: bind.key.secret)
        let b = try DNSUpdateClient(server: bind.server, key: unknown, zone: "bandungkab.go.id", timeout: .seconds(3))
        let e2 = try #require(throws: DesaError.self) { try b.addTXT(name: Self.name, value: Self.value1) }
        #expect(e2.message.contains("refused the key nobody"), "\(e2.message)")
        #expect(e2.message.contains("BADKEY"), "\(e2.message)")

        // The right key with a different algorithm is unknown to the server too.
        let sha512 = try TSIGKey(name: bind.key.name, algorithm: .hmacSHA512, secret: bind.key.secret)
        let c = try DNSUpdateClient(server: bind.server, key: sha512, zone: "bandungkab.go.id", timeout: .seconds(3))
        let e3 = try #require(throws: DesaError.self) { try c.addTXT(name: Self.name, value: Self.value1) }
        #expect(e3.message.contains("BADKEY"), "\(e3.message)")
        #expect(try bind.txt(Self.name) == [])

        chmod(bind.keyPath, 0o644)
        let e4 = try #require(throws: DesaError.self) { try TSIGKey.load(path: bind.keyPath) }
        #expect(e4.message == "key file \(bind.keyPath) is readable by others (mode 644); chmod 600 \(bind.keyPath)")
        chmod(bind.keyPath, 0o600)
        #expect(try TSIGKey.load(path: bind.keyPath).secret == bind.key.secret)
    }

    @Test("a name outside every zone the server has is refused, naming the name")
    func outsideZones() throws {
        let bind = try BindHarness(port: 15056, zones: ["bandungkab.go.id"])
        defer { bind.stop() }
        let outside = "_acme-challenge.cileunyi.garutkab.go.id"

        // Zone discovery finds none.
        let discover = try DNSUpdateClient(server: bind.server, key: bind.key, timeout: .seconds(2))
        let e1 = try #require(throws: DesaError.self) { try discover.addTXT(name: outside, value: Self.value1) }
        #expect(e1.message.contains("serves no zone containing \(outside)"), "\(e1.message)")
        #expect(e1.message.contains("REFUSED"), "\(e1.message)")

        // A zone named by the configuration that the server does not have: BIND says NOTAUTH.
        let wrongZone = try DNSUpdateClient(server: bind.server, key: bind.key, zone: "garutkab.go.id", timeout: .seconds(2))
        let e2 = try #require(throws: DesaError.self) { try wrongZone.addTXT(name: outside, value: Self.value1) }
        #expect(e2.message.contains(outside), "\(e2.message)")
        #expect(e2.message.contains("NOTAUTH") || e2.message.contains("REFUSED"), "\(e2.message)")

        // A name outside the configured zone is refused before anything is sent.
        let configured = try DNSUpdateClient(server: bind.server, key: bind.key, zone: "bandungkab.go.id", timeout: .seconds(2))
        let e3 = try #require(throws: DesaError.self) { try configured.addTXT(name: outside, value: Self.value1) }
        #expect(e3 == DesaError(.invalidInput, "\(outside) is not inside the zone bandungkab.go.id"))

        // The query side: the server refuses to answer for a zone it does not have.
        let e4 = try #require(throws: DesaError.self) { try configured.queryTXT(name: outside) }
        #expect(e4.message.contains("REFUSED") && e4.message.contains(outside), "\(e4.message)")
    }

    @Test("zone discovery walks up from a deep name to the zone")
    func findsZone() throws {
        let bind = try BindHarness(port: 15057)
        defer { bind.stop() }
        let client = try DNSUpdateClient(server: bind.server, key: bind.key, timeout: .seconds(2))
        #expect(try client.findZone(for: "_acme-challenge.cileunyi-kulon.bandungkab.go.id") == "bandungkab.go.id")
        #expect(try client.findZone(for: "a.b.c.d.cileunyi-kulon.bandungkab.go.id.") == "bandungkab.go.id")
        #expect(try client.findZone(for: "bandungkab.go.id") == "bandungkab.go.id")
        #expect(try client.findZone(for: "_acme-challenge.cileunyi-kulon.desa.id") == "desa.id")
        // Discovery then updates the zone it found.
        try client.addTXT(name: "_acme-challenge.cileunyi-kulon.desa.id", value: Self.value1)
        #expect(try bind.txt("_acme-challenge.cileunyi-kulon.desa.id") == [Self.value1])
    }

    @Test("the dns-01 responder publishes, waits until the server answers, and cleans up")
    func responder() async throws {
        let bind = try BindHarness(port: 15058)
        defer { bind.stop() }
        let client = try DNSUpdateClient(server: bind.server, key: bind.key, timeout: .seconds(2))
        let responder: any DNS01Responder = RFC2136Responder(client: client, propagationTimeout: .seconds(5))

        try await responder.present(domain: "*.cileunyi-kulon.bandungkab.go.id", txtValue: Self.value1)
        #expect(try bind.txt(Self.name) == [Self.value1])
        try await responder.present(domain: "cileunyi-kulon.bandungkab.go.id", txtValue: Self.value2)
        #expect(try bind.txt(Self.name) == [Self.value1, Self.value2].sorted())

        await responder.cleanUp(domain: "*.cileunyi-kulon.bandungkab.go.id", txtValue: Self.value1)
        #expect(try bind.txt(Self.name) == [Self.value2])
        await responder.cleanUp(domain: "cileunyi-kulon.bandungkab.go.id", txtValue: Self.value2)
        #expect(try bind.txt(Self.name) == [])

        await #expect(throws: DesaError.self) {
            try await responder.present(domain: "cileunyi kulon.bandungkab.go.id", txtValue: Self.value1)
        }
        await #expect(throws: DesaError.self) {
            try await responder.present(domain: "cileunyi-kulon.bandungkab.go.id", txtValue: "not base64url!")
        }
    }
}
