import Foundation
import Testing
@testable import Provisioner

/// The DNS wire format and TSIG without BIND: an update compared byte for byte with one BIND's
/// nsupdate sent, names and values refused, key files, and answers no honest server sends.
@Suite("DNS wire format and hostile answers")
struct DNSWireTests {
    static let name = "_acme-challenge.cileunyi-kulon.bandungkab.go.id"
    static let value = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    /// secret "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" (bytes 0...31).
    static let key = try! TSIGKey(name: "desa-acme", algorithm: .hmacSHA256, secret: Array(0...31))

    /// What `nsupdate -k` (BIND 9.18) sent for `update add <name> 60 TXT "<value>"` in the zone
    /// bandungkab.go.id with the key above, captured from a UDP socket: ID 0xe877, time signed
    /// 0x6b069db3, fudge 300.
    static let nsupdatePacket = """
        e877280000010000000100010a62616e64756e676b616202676f02696400000600010f5f61636d652d636861\
        6c6c656e67650e63696c65756e79692d6b756c6f6e0a62616e64756e676b616202676f02696400001000010000\
        003c002c2b4c6f71586359563871354f4e624a5178626d52375343544e6f337469415844666f77796a78416a45\
        75583009646573612d61636d650000fa00ff00000000003d0b686d61632d7368613235360000006b069db3012c\
        00205678a0ea8e1490785e2450e6eb6fb09e19dc41ef0c2324fcb4a999ce8ece2f85e87700000000
        """

    static func hex(_ s: String) -> [UInt8] {
        let chars = Array(s.utf8)
        return stride(from: 0, to: chars.count, by: 2).map { UInt8(String(decoding: chars[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    // MARK: - Encoding

    @Test("a signed update is byte for byte what BIND's nsupdate sends, MAC included")
    func updateMatchesNsupdate() throws {
        let update = DNSUpdate(zone: "bandungkab.go.id", name: Self.name, rdata: try DNSUpdateClient.txtRData(Self.value), ttl: 60, add: true)
        let (signed, mac) = TSIG.sign(update.message(id: 0xe877), key: Self.key, timeSigned: 0x6b06_9db3)
        let golden = Self.hex(Self.nsupdatePacket)
        #expect(signed == golden)
        #expect(mac == Array(golden[(golden.count - 38)..<(golden.count - 6)]))
    }

    @Test("a delete names the one RR: class NONE, TTL 0, the same RDATA")
    func deleteEncoding() throws {
        let rdata = try DNSUpdateClient.txtRData(Self.value)
        let bytes = DNSUpdate(zone: "bandungkab.go.id", name: Self.name, rdata: rdata, ttl: 60, add: false).message(id: 1)
        let m = try DNSMessage(parsing: bytes)
        #expect(m.opcode == 5 && !m.isResponse)
        #expect(m.questions == [DNSQuestion(name: "bandungkab.go.id", type: 6, cls: 1)])
        #expect(m.answers.isEmpty)   // no prerequisites
        let rr = try #require(m.authority.first)
        #expect((rr.name, rr.type, rr.cls, rr.ttl) == (Self.name, 16, 254, 0))
        #expect(Array(bytes[rr.rdata]) == rdata)
    }

    @Test("TXT values become character-strings of at most 255 bytes; others are refused")
    func txtValues() throws {
        #expect(try DNSUpdateClient.txtRData(Self.value) == [43] + Array(Self.value.utf8))
        let long = try DNSUpdateClient.txtRData(String(repeating: "a", count: 300))
        #expect(long.count == 302 && long[0] == 255 && long[256] == 45)
        #expect(try DNSUpdateClient.txtRData("") == [0])
        #expect(throws: DesaError.self) { try DNSUpdateClient.txtRData("tab\there") }
        #expect(throws: DesaError.self) { try DNSUpdateClient.txtRData("désa") }
        #expect(throws: DesaError.self) { try DNSUpdateClient.txtRData(String(repeating: "a", count: 1025)) }
    }

    @Test("names: LDH labels and _acme-challenge pass, lower-cased; everything else is refused", arguments: [
        ("_acme-challenge.Cileunyi-Kulon.BandungKab.go.id.", "_acme-challenge.cileunyi-kulon.bandungkab.go.id"),
        ("desa.id", "desa.id"),
        ("xn--80ak6aa92e.com", "xn--80ak6aa92e.com"),
    ])
    func goodNames(raw: String, canonical: String) throws {
        #expect(try DNSName.validate(raw) == canonical)
    }

    @Test("bad names are refused with the reason", arguments: [
        ("", "is empty"),
        ("a..b", "label \"\" is empty"),
        ("-a.b", "starts or ends with a hyphen"),
        ("a b.id", "has the character \" \""),
        ("a\u{0}b.id", "has the character"),
        ("*.desa.id", "has the character \"*\""),
        ("desa.id/x", "has the character \"/\""),
        ("_.desa.id", "nothing after the underscore"),
        ("désa.id", "has the character"),
        (String(repeating: "a", count: 64) + ".id", "longer than 63"),
        (Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: "."), "longer than 253"),
    ])
    func badNames(raw: String, reason: String) {
        let e = #expect(throws: DesaError.self) { try DNSName.validate(raw, what: "the name") }
        #expect(e?.kind == .invalidInput)
        #expect(e?.message.contains(reason) == true, "\(e?.message ?? "")")
    }

    // MARK: - Key files

    @Test("key files: tsig-keygen's format, comments, several keys, and broken files")
    func keyFiles() throws {
        let text = """
        # made by tsig-keygen
        key "desa-acme" {
        \talgorithm hmac-sha256;
        \tsecret "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        };
        /* another */ key other.example. { algorithm HMAC-SHA512; secret "c2VjcmV0"; }; // end
        """
        let k = try TSIGKey.parse(text, source: "k", name: "desa-acme")
        #expect(k.name == "desa-acme" && k.algorithm == .hmacSHA256 && k.secret == Self.key.secret)
        let o = try TSIGKey.parse(text, source: "k", name: "other.example")
        #expect(o.name == "other.example" && o.algorithm == .hmacSHA512 && o.secret == Array("secret".utf8))
        #expect(!"\(o)".contains("c2VjcmV0"))

        func refused(_ text: String, _ fragment: String) {
            let e = #expect(throws: DesaError.self) { try TSIGKey.parse(text, source: "/etc/desa/dns.key") }
            #expect(e?.message.contains(fragment) == true, "\(e?.message ?? "")")
        }
        refused(text, "holds 2 keys")
        refused("", "holds no key")
        refused(#"key "k" { algorithm hmac-sha256; };"#, "no secret")
        refused(#"key "k" { algorithm hmac-sha256; secret "!!"; };"#, "not base64")
        refused(#"key "k" { algorithm hmac-md5; secret "c2VjcmV0"; };"#, "uses the algorithm \"hmac-md5\"")
        refused(#"key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; }"#, "ends where ';' was expected")
        refused(#"zone "x" { };"#, "expected a 'key' statement")
        refused(#"key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; nope 1; };"#, "unknown option 'nope'")

        // On disk: 0600 loads, anything group or others may touch is refused.
        let path = NSTemporaryDirectory() + "desa-tsig-\(UInt32.random(in: 0...UInt32.max)).key"
        defer { unlink(path) }
        try AtomicFiles.write([FileWrite(path: path, content: #"key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; };"#, mode: 0o600)])
        #expect(try TSIGKey.load(path: path).name == "k")
        for mode: mode_t in [0o640, 0o604, 0o620] {
            chmod(path, mode)
            let e = #expect(throws: DesaError.self) { try TSIGKey.load(path: path) }
            #expect(e?.message.hasPrefix("key file \(path) is readable by others") == true)
        }
        let missing = #expect(throws: DesaError.self) { try TSIGKey.load(path: path + ".missing") }
        #expect(missing?.message.contains("No such file") == true)
    }

    // MARK: - Parsing hostile bytes

    /// A real-looking answer: question _acme-challenge.x.id TXT, one TXT answer whose owner
    /// is a compression pointer to the question name.
    static func validAnswer(id: UInt16 = 0x1234) -> [UInt8] {
        var w = DNSWriter()
        w.header(id: id, flags: 0x8400, qd: 1, an: 1, ns: 0, ar: 0)
        w.name("_acme-challenge.x.id"); w.u16(16); w.u16(1)
        w.append([0xc0, 12]); w.u16(16); w.u16(1); w.u32(60)
        w.u16(44); w.u8(43); w.append(Array(value.utf8))
        return w.bytes
    }

    @Test("a compressed answer is read, pointer and all")
    func parsesCompression() throws {
        let m = try DNSMessage(parsing: Self.validAnswer())
        #expect(m.answers.count == 1 && m.answers[0].name == "_acme-challenge.x.id")
        #expect(try m.txt(m.answers[0]) == Self.value)
    }

    @Test("malformed names give an error naming the fault", arguments: [
        ([0xc0, 12], "pointer loop"),                         // points to itself
        ([1, 0x61, 0xc0, 12], "pointer loop"),                // a, then back to its own start
        ([0xc0, 14, 1, 0x61, 0], "pointer loop"),             // points forward
        ([0xc0], "truncated"),                                // half a pointer
        ([5, 0x61, 0x62], "truncated"),                       // label runs past the end
        ([0x41, 0], "unknown label type"),                    // extended label type
        ([3, 0x61, 0x62], "truncated"),
    ] as [([UInt8], String)])
    func badNamesOnTheWire(name: [UInt8], fault: String) {
        var w = DNSWriter()
        w.header(id: 1, flags: 0x8000, qd: 1, an: 0, ns: 0, ar: 0)
        w.append(name); w.u16(16); w.u16(1)
        let e = #expect(throws: DNSWireError.self) { _ = try DNSMessage(parsing: w.bytes) }
        #expect(e?.description.contains(fault) == true, "\(e?.description ?? "")")
    }

    @Test("a chain of backward pointers is followed; a name over 255 bytes is refused")
    func pointerChains() throws {
        // Name 1 at 12: "a" + root. Each next name: one label + pointer to the previous.
        var w = DNSWriter()
        w.header(id: 1, flags: 0x8000, qd: 1, an: 0, ns: 0, ar: 0)
        w.append([1, 0x61, 0]); w.u16(16); w.u16(1)
        var previous = 12
        var owners: [Int] = []
        for _ in 0..<70 {
            owners.append(w.bytes.count)
            w.append([3, 0x62, 0x62, 0x62, 0xc0, UInt8(previous)]); w.u16(16); w.u16(1); w.u32(0); w.u16(0)
            previous = owners.last!
            if previous > 255 { break }
        }
        w.bytes[7] = UInt8(owners.count)   // ANCOUNT
        let m = try DNSMessage(parsing: w.bytes)
        #expect(m.answers.last?.name.split(separator: ".").count == owners.count + 1)

        var long = DNSWriter()
        long.header(id: 1, flags: 0x8000, qd: 1, an: 0, ns: 0, ar: 0)
        for _ in 0..<5 { long.append([63] + Array(repeating: 0x61, count: 63)) }
        long.append([0]); long.u16(16); long.u16(1)
        let e = #expect(throws: DNSWireError.self) { _ = try DNSMessage(parsing: long.bytes) }
        #expect(e?.description.contains("longer than 255") == true)
    }

    @Test("every cut of a valid answer, and 20,000 random mutations, fail cleanly or parse")
    func fuzz() {
        let valid = Self.validAnswer()
        for cut in 0..<valid.count {
            #expect(throws: DNSWireError.self) { _ = try DNSMessage(parsing: Array(valid[0..<cut])) }
        }
        var rng = SystemRandomNumberGenerator()
        let start = ContinuousClock.now
        for _ in 0..<20_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let m = try? DNSMessage(parsing: bytes) {
                for rr in m.answers where rr.type == 16 { _ = try? m.txt(rr) }
                _ = try? TSIG.record(in: m)
            }
            let junk = (0..<Int.random(in: 0...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? DNSMessage(parsing: junk)
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    // MARK: - Hostile servers

    /// The ID of a request and its head as an answer, for scripted replies.
    static func txtAnswer(_ request: [UInt8], value: String = value, flags: UInt16 = 0x8400) -> [UInt8] {
        var w = DNSWriter(bytes: FakeDNSServer.answerHead(request, flags: flags, an: 1))
        w.append([0xc0, 12]); w.u16(16); w.u16(1); w.u32(60)
        w.u16(UInt16(value.utf8.count + 1)); w.u8(UInt8(value.utf8.count)); w.append(Array(value.utf8))
        return w.bytes
    }

    /// Runs `body` against a fake server and returns the error it throws and how long it took.
    static func failure(port: UInt16, tcp: Bool = false, timeout: Duration = .seconds(1),
                        reply: @escaping @Sendable ([UInt8], Bool) -> [[UInt8]],
                        _ body: (DNSUpdateClient) throws -> Void) throws -> (DesaError?, Duration) {
        let fake = try FakeDNSServer(port: port, tcp: tcp, reply: reply)
        defer { fake.stop() }
        let client = try DNSUpdateClient(server: fake.server, key: key, zone: "x.id", timeout: timeout)
        let start = ContinuousClock.now
        var caught: DesaError?
        do { try body(client) } catch let e as DesaError { caught = e }
        return (caught, ContinuousClock.now - start)
    }

    @Test("garbage, wrong IDs and answers to other questions are ignored, then the timeout names them")
    func ignoredPackets() throws {
        let (e, took) = try Self.failure(port: 15101) { request, _ in
            var wrongID = Self.txtAnswer(request)
            wrongID[0] ^= 0xff
            var otherQuestion = Self.txtAnswer(request)
            otherQuestion[12 + 17] = UInt8(ascii: "y")   // _acme-challenge.y.id
            let garbage = [request[0] ^ 0xff, request[1]] + Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)
            return [garbage, [1, 2, 3], wrongID, otherQuestion]
        } _: { client in
            _ = try client.queryTXT(name: "_acme-challenge.x.id")
        }
        let message = try #require(e).message
        #expect(message.hasPrefix("no answer from the DNS server 127.0.0.1:15101 within 1 s; ignored"), "\(message)")
        #expect(message.contains("too short for a DNS header"), "\(message)")
        #expect(message.contains("an answer with ID"), "\(message)")
        #expect(took < .milliseconds(2500))
        #expect(took > .milliseconds(900))
    }

    @Test("a spoofed answer with a wrong ID does not hide the real one that follows")
    func wrongIDThenRight() throws {
        let fake = try FakeDNSServer(port: 15102) { request, _ in
            var spoof = Self.txtAnswer(request, value: "spoofed")
            spoof[1] ^= 1
            return [spoof, Self.txtAnswer(request)]
        }
        defer { fake.stop() }
        let client = try DNSUpdateClient(server: fake.server, key: Self.key, timeout: .seconds(1))
        #expect(try client.queryTXT(name: "_acme-challenge.x.id") == [Self.value])
    }

    @Test("an answer that matches the query but is broken is an error at once, naming the fault", arguments: [
        ("loop", "pointer loop"), ("cut", "truncated"), ("garbage", "malformed"), ("txt", "runs past the end"),
    ])
    func malformedAnswers(kind: String, fault: String) throws {
        let port: UInt16 = ["loop": 15103, "cut": 15104, "garbage": 15105, "txt": 15106][kind]!
        let (e, took) = try Self.failure(port: port) { request, _ in
            var answer = Self.txtAnswer(request)
            switch kind {
            case "loop":
                let owner = answer.count - (10 + 44) - 2
                answer[owner + 1] = UInt8(owner)         // the answer's owner points to itself
            case "cut":
                answer.removeLast(20)
            case "garbage":
                answer = Array(answer[0..<4]) + [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] + (0..<40).map { _ in UInt8.random(in: 0...255) }
            default:
                answer[answer.count - 44] = 200        // the TXT string claims 200 bytes
            }
            return [answer]
        } _: { client in
            _ = try client.queryTXT(name: "_acme-challenge.x.id")
        }
        let message = try #require(e).message
        #expect(message.contains("malformed"), "\(message)")
        #expect(message.contains(fault), "\(message)")
        #expect(took < .milliseconds(900))   // at once, not at the 1 s timeout
    }

    @Test("a truncated UDP answer (TC) is asked again over TCP")
    func tcpFallback() throws {
        let fake = try FakeDNSServer(port: 15107, tcp: true) { request, overTCP in
            overTCP ? [Self.txtAnswer(request)] : [FakeDNSServer.answerHead(request, flags: 0x8600)]
        }
        defer { fake.stop() }
        let client = try DNSUpdateClient(server: fake.server, key: Self.key, timeout: .seconds(1))
        #expect(try client.queryTXT(name: "_acme-challenge.x.id") == [Self.value])
        #expect(fake.requestCount == 2)
    }

    @Test("silence and a closed port end within the timeout with a clear error")
    func noServer() throws {
        let (silent, took) = try Self.failure(port: 15108, timeout: .milliseconds(600)) { _, _ in [] } _: { client in
            try client.addTXT(name: "_acme-challenge.x.id", value: Self.value)
        }
        #expect(silent?.message.contains("no answer from the DNS server 127.0.0.1:15108 within 0.6 s") == true, "\(silent?.message ?? "")")
        #expect(silent?.message.hasPrefix("adding the TXT record") == true)
        #expect(took < .milliseconds(1200))

        let client = try DNSUpdateClient(server: "127.0.0.1:15109", key: Self.key, zone: "x.id", timeout: .seconds(1))
        let refused = #expect(throws: DesaError.self) { try client.queryTXT(name: "x.id") }
        #expect(refused?.message.contains("127.0.0.1:15109 refused the connection") == true, "\(refused?.message ?? "")")
    }

    @Test("an update's answer must carry a good signature", arguments: ["unsigned", "other key", "altered", "clock", "good"])
    func answerSignatures(kind: String) throws {
        let port: UInt16 = ["unsigned": 15110, "other key": 15111, "altered": 15112, "clock": 15113, "good": 15114][kind]!
        let now = UInt64(time(nil))
        let (e, _) = try Self.failure(port: port) { request, _ in
            let head = FakeDNSServer.answerHead(request, flags: 0x8000)
            switch kind {
            case "unsigned": return [head]
            case "other key":
                let other = try! TSIGKey(name: "desa-acme", secret: Array(repeating: 1, count: 32))
                return [FakeDNSServer.sign(answer: head, request: request, key: other, timeSigned: now)]
            case "altered":
                var signed = FakeDNSServer.sign(answer: head, request: request, key: Self.key, timeSigned: now)
                signed[2] |= 0x04   // AA set after signing
                return [signed]
            case "clock":
                return [FakeDNSServer.sign(answer: head, request: request, key: Self.key, timeSigned: now - 1000)]
            default:
                return [FakeDNSServer.sign(answer: head, request: request, key: Self.key, timeSigned: now)]
            }
        } _: { client in
            try client.addTXT(name: "_acme-challenge.x.id", value: Self.value)
        }
        let expected = ["unsigned": "without a TSIG signature", "other key": "its MAC does not match",
                        "altered": "its MAC does not match", "clock": "check both clocks"][kind]
        if let expected {
            #expect(e?.message.contains(expected) == true, "\(e?.message ?? "no error")")
        } else {
            #expect(e == nil)
        }
    }
}
