import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Adds and deletes TXT records on an authoritative server with dynamic updates (RFC 2136)
/// signed with TSIG (RFC 8945), and asks the same server what it answers.
///
/// Every call blocks (at most `timeout` per DNS exchange): call it from a thread of its own,
/// e.g. through `BlockingThread.run`, never on Swift's cooperative pool.
public struct DNSUpdateClient: Sendable {
    /// As shown in messages: `127.0.0.1:53`.
    public let server: String
    public let key: TSIGKey
    /// The zone to update; nil to find it (SOA discovery) for each name.
    public let zone: String?
    public let timeout: Duration
    let endpoint: DNSEndpoint

    public init(server: String, key: TSIGKey, zone: String? = nil, timeout: Duration = .seconds(5)) throws {
        endpoint = try DNSEndpoint(server)
        self.server = endpoint.display
        self.key = key
        self.zone = try zone.map { try DNSName.validate($0, what: "the zone") }
        self.timeout = timeout
    }

    /// Adds one TXT record (an RR already there with the same value stays, once).
    public func addTXT(name: String, value: String, ttl: UInt32 = 60) throws {
        try update(name: name, value: value, ttl: ttl, add: true)
    }

    /// Deletes exactly the TXT record with this value; others at the name stay.
    public func deleteTXT(name: String, value: String) throws {
        try update(name: name, value: value, ttl: 0, add: false)
    }

    /// The TXT values the server answers for `name` (each record's strings joined), asked
    /// without recursion; the answer must be authoritative. No record: `[]`.
    public func queryTXT(name: String) throws -> [String] {
        let n = try DNSName.validate(name, what: "the TXT record name")
        let m = try query(n, type: DNSConst.typeTXT)
        guard m.rcode == 0 || m.rcode == 3 else {
            throw DesaError.system("the DNS server \(server) did not answer the TXT query for \(n): \(Self.rcodeName(m.rcode))\(m.rcode == 5 ? " (it serves no zone containing the name)" : "")")
        }
        guard m.authoritative else {
            throw DesaError(.config, "the DNS server \(server) is not authoritative for \(n) (its answer has no AA flag)")
        }
        do {
            return try m.answers.filter { $0.type == DNSConst.typeTXT && $0.name == n }.map { try m.txt($0) }
        } catch {
            throw DesaError.system("the DNS server \(server) sent a malformed TXT answer for \(n): \(error)")
        }
    }

    /// The zone that holds `name` on this server: asks for the SOA of the name, then of
    /// each parent, until the server answers with a zone (in the answer, or the authority
    /// section of a negative answer).
    public func findZone(for name: String) throws -> String {
        let n = try DNSName.validate(name, what: "the DNS name")
        var candidate: String? = n
        var tried: [String] = []
        while let c = candidate {
            let m = try query(c, type: DNSConst.typeSOA)
            if m.rcode == 0 || m.rcode == 3 {
                if m.authoritative {
                    if m.answers.contains(where: { $0.type == DNSConst.typeSOA && $0.name == c }) { return c }
                    if let soa = m.authority.first(where: { $0.type == DNSConst.typeSOA && DNSName.isInside(c, zone: $0.name) }) {
                        return soa.name
                    }
                } else if let cut = m.authority.first(where: { $0.type == DNSConst.typeNS && DNSName.isInside(c, zone: $0.name) }) {
                    throw DesaError(.config, "\(n) lies in the zone \(cut.name), which the DNS server \(server) delegates to other servers; point desa at that zone's primary server")
                }
            }
            tried.append("\(c) (\(m.rcode == 0 && !m.authoritative ? "not authoritative" : Self.rcodeName(m.rcode)))")
            candidate = DNSName.parent(c)
        }
        throw DesaError(.notFound, "the DNS server \(server) serves no zone containing \(n): SOA queries for \(tried.joined(separator: ", ")) found none")
    }

    // MARK: - Updates

    private func update(name: String, value: String, ttl: UInt32, add: Bool) throws {
        let n = try DNSName.validate(name, what: "the TXT record name")
        let rdata = try Self.txtRData(value)
        let z = try zone ?? findZone(for: n)
        guard DNSName.isInside(n, zone: z) else {
            throw DesaError.invalid("\(n) is not inside the zone \(z)")
        }
        let change = add ? "adding the TXT record \(Quote.show(value)) at \(n)" : "deleting the TXT record \(Quote.show(value)) at \(n)"
        let id = UInt16.random(in: .min ... .max)
        let update = DNSUpdate(zone: z, name: n, rdata: rdata, ttl: ttl, add: add)
        let (request, mac) = TSIG.sign(update.message(id: id), key: key, timeSigned: UInt64(time(nil)))
        let expect = DNSExpectation(id: id, question: DNSQuestion(name: z, type: DNSConst.typeSOA, cls: DNSConst.classIN))
        let m: DNSMessage
        do {
            m = try DNSTransport.exchange(request, with: endpoint, expect: expect, timeout: timeout)
        } catch let e as DesaError {
            throw DesaError(e.kind, "\(change) failed: \(e.message)")
        }
        try check(m, requestMAC: mac, change: change, name: n, zone: z)
    }

    /// Turns the server's answer to an update into success or a clear error.
    private func check(_ m: DNSMessage, requestMAC: [UInt8], change: String, name: String, zone: String) throws {
        let tsig: TSIG.Record?
        do { tsig = try TSIG.record(in: m) } catch {
            throw DesaError.system("\(change) failed: the DNS server \(server) sent a malformed answer: \(error)")
        }
        if let t = tsig, t.error != 0 {
            let why: String
            switch t.error {
            case TSIG.badSig: why = "the signature does not match (BADSIG): the key's secret differs from the server's"
            case TSIG.badKey: why = "it knows no key of that name with the algorithm \(key.algorithm.rawValue) (BADKEY)"
            case TSIG.badTime: why = "the time signed is more than \(TSIG.fudge) s from the server's clock (BADTIME): check both clocks"
            default: why = "TSIG error \(t.error)"
            }
            throw DesaError(.config, "\(change) failed: the DNS server \(server) refused the key \(key.name): \(why)")
        }
        if m.rcode != 0 {
            let why: String
            switch m.rcode {
            case 1: why = "it could not parse the update (FORMERR)"
            case 2: why = "it failed to apply the update (SERVFAIL); its log says why"
            case 4: why = "it does not support dynamic updates (NOTIMP)"
            case 5: why = "it refused the update (REFUSED): the key \(key.name) may not update \(name) in the zone \(zone) (see allow-update or update-policy)"
            case 9: why = tsig == nil
                ? "it refused the key \(key.name) or is not authoritative for the zone \(zone) (NOTAUTH)"
                : "it is not authoritative for the zone \(zone) (NOTAUTH)"
            case 10: why = "\(name) is not in the zone \(zone) (NOTZONE)"
            default: why = "it answered \(Self.rcodeName(m.rcode))"
            }
            let kind: DesaError.Kind = [5, 9, 10].contains(m.rcode) ? .config : .system
            throw DesaError(kind, "\(change) failed: the DNS server \(server) (zone \(zone)): \(why)")
        }
        guard let t = tsig else {
            throw DesaError.system("\(change): the DNS server \(server) answered without a TSIG signature; the answer cannot be trusted")
        }
        if let why = TSIG.verify(m, record: t, requestMAC: requestMAC, key: key, now: UInt64(time(nil))) {
            throw DesaError.system("\(change): the signature of the DNS server \(server)'s answer does not verify: \(why)")
        }
    }

    // MARK: - Queries

    private func query(_ name: String, type: UInt16) throws -> DNSMessage {
        let id = UInt16.random(in: .min ... .max)
        var w = DNSWriter()
        w.header(id: id, flags: DNSConst.opcodeQuery << 11, qd: 1, an: 0, ns: 0, ar: 1)
        w.name(name); w.u16(type); w.u16(DNSConst.classIN)
        // EDNS(0) with a 1232-byte payload, so answers rarely need TCP.
        w.record(name: "", type: DNSConst.typeOPT, cls: 1232, ttl: 0, rdata: [])
        let expect = DNSExpectation(id: id, question: DNSQuestion(name: name, type: type, cls: DNSConst.classIN))
        return try DNSTransport.exchange(w.bytes, with: endpoint, expect: expect, timeout: timeout)
    }

    // MARK: - Encoding

    /// A TXT value as RDATA: printable ASCII, split into character-strings of at most 255.
    static func txtRData(_ value: String) throws -> [UInt8] {
        let bytes = Array(value.utf8)
        guard bytes.count <= 1024 else {
            throw DesaError.invalid("the TXT value is \(bytes.count) bytes long; at most 1024 are sent")
        }
        if let bad = bytes.first(where: { $0 < 0x20 || $0 > 0x7e }) {
            throw DesaError.invalid("the TXT value \(Quote.show(value)) has a byte 0x\(String(bad, radix: 16)) that is not printable ASCII")
        }
        if bytes.isEmpty { return [0] }
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let chunk = bytes[i..<min(i + 255, bytes.count)]
            out.append(UInt8(chunk.count))
            out.append(contentsOf: chunk)
            i += chunk.count
        }
        return out
    }

    static func rcodeName(_ rcode: UInt16) -> String {
        let names: [UInt16: String] = [0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
                                       5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"]
        return names[rcode] ?? "RCODE \(rcode)"
    }
}

/// One change of an UPDATE message (RFC 2136 §2.5): add an RR (class IN) or delete that
/// RR only (class NONE, TTL 0). No prerequisites.
struct DNSUpdate {
    var zone: String, name: String, rdata: [UInt8], ttl: UInt32, add: Bool

    /// The unsigned message; `TSIG.sign` appends the signature.
    func message(id: UInt16) -> [UInt8] {
        var w = DNSWriter()
        w.header(id: id, flags: DNSConst.opcodeUpdate << 11, qd: 1, an: 0, ns: 1, ar: 0)
        w.name(zone); w.u16(DNSConst.typeSOA); w.u16(DNSConst.classIN)
        w.record(name: name, type: DNSConst.typeTXT, cls: add ? DNSConst.classIN : DNSConst.classNONE,
                 ttl: add ? ttl : 0, rdata: rdata)
        return w.bytes
    }
}
