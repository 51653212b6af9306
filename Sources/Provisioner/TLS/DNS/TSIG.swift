/// Signing requests and checking responses with TSIG (RFC 8945).
enum TSIG {
    /// Seconds of clock difference allowed, as BIND's own tools use.
    static let fudge: UInt16 = 300

    /// TSIG error codes (RFC 8945 §3).
    static let badSig: UInt16 = 16, badKey: UInt16 = 17, badTime: UInt16 = 18, badTrunc: UInt16 = 22

    /// The signed message: `message` (its ARCOUNT not yet counting the TSIG record) with a
    /// TSIG record appended, and the MAC, which the response's MAC covers (§4.3.3).
    static func sign(_ message: [UInt8], key: TSIGKey, timeSigned: UInt64) -> (message: [UInt8], mac: [UInt8]) {
        precondition(message.count >= 12)
        var data = message
        data.append(contentsOf: variables(key: key, timeSigned: timeSigned, fudge: fudge, error: 0, other: []))
        let mac = key.algorithm.mac(key: key.secret, data: data)

        var rdata = DNSWriter()
        rdata.name(key.algorithm.wireName)
        rdata.u48(timeSigned)
        rdata.u16(fudge)
        rdata.u16(UInt16(mac.count))
        rdata.append(mac)
        rdata.append(Array(message[0..<2]))   // original ID
        rdata.u16(0)                           // error
        rdata.u16(0)                           // other len
        var out = DNSWriter(bytes: message)
        out.record(name: key.name, type: DNSConst.typeTSIG, cls: DNSConst.classANY, ttl: 0, rdata: rdata.bytes)
        let arcount = (UInt16(message[10]) << 8 | UInt16(message[11])) &+ 1
        out.bytes[10] = UInt8(arcount >> 8)
        out.bytes[11] = UInt8(arcount & 0xff)
        return (out.bytes, mac)
    }

    /// The TSIG variables of §4.3.3, in canonical wire form.
    static func variables(key: TSIGKey, timeSigned: UInt64, fudge: UInt16, error: UInt16, other: [UInt8]) -> [UInt8] {
        var w = DNSWriter()
        w.name(key.name)
        w.u16(DNSConst.classANY)
        w.u32(0)
        w.name(key.algorithm.wireName)
        w.u48(timeSigned)
        w.u16(fudge)
        w.u16(error)
        w.u16(UInt16(other.count))
        w.append(other)
        return w.bytes
    }

    /// A TSIG record as received.
    struct Record {
        var keyName: String, algorithm: String
        var timeSigned: UInt64, fudge: UInt16
        var mac: [UInt8], originalID: UInt16, error: UInt16, other: [UInt8]
        var start: Int
    }

    /// The message's TSIG record, nil if it has none; one anywhere but last is an error.
    static func record(in message: DNSMessage) throws(DNSWireError) -> Record? {
        for (i, rr) in message.additional.enumerated() where rr.type == DNSConst.typeTSIG {
            guard i == message.additional.count - 1 else {
                throw DNSWireError(description: "a TSIG record is not the last record of the message")
            }
            var r = message.rdataReader(rr)
            let algorithm = try r.name()
            let time = try r.u48("a TSIG record"), fudge = try r.u16("a TSIG record")
            let mac = try r.take(Int(try r.u16("a TSIG record")), "a TSIG MAC")
            let originalID = try r.u16("a TSIG record"), error = try r.u16("a TSIG record")
            let other = try r.take(Int(try r.u16("a TSIG record")), "a TSIG record's other data")
            guard r.pos == rr.rdata.upperBound else {
                throw DNSWireError(description: "a TSIG record has \(rr.rdata.upperBound - r.pos) extra bytes")
            }
            return Record(keyName: rr.name, algorithm: algorithm, timeSigned: time, fudge: fudge, mac: mac,
                          originalID: originalID, error: error, other: other, start: rr.start)
        }
        return nil
    }

    /// Why a response's signature is not good, or nil when it is (§5.3).
    static func verify(_ message: DNSMessage, record t: Record, requestMAC: [UInt8], key: TSIGKey, now: UInt64) -> String? {
        guard t.keyName == key.name else { return "it is signed with the key \(t.keyName), not \(key.name)" }
        guard t.algorithm == key.algorithm.wireName else { return "it is signed with \(t.algorithm), not \(key.algorithm.rawValue)" }
        let full = key.algorithm.macLength
        guard t.mac.count <= full, t.mac.count >= max(10, full / 2) else {
            return "its MAC has \(t.mac.count) bytes (expected \(full))"
        }
        var data = DNSWriter()
        data.u16(UInt16(requestMAC.count))
        data.append(requestMAC)
        var body = Array(message.bytes[0..<t.start])
        body[0] = UInt8(t.originalID >> 8)
        body[1] = UInt8(t.originalID & 0xff)
        let arcount = (UInt16(body[10]) << 8 | UInt16(body[11])) &- 1
        body[10] = UInt8(arcount >> 8)
        body[11] = UInt8(arcount & 0xff)
        data.append(body)
        data.append(variables(key: key, timeSigned: t.timeSigned, fudge: t.fudge, error: t.error, other: t.other))
        let expected = key.algorithm.mac(key: key.secret, data: data.bytes)
        var diff: UInt8 = 0
        for (a, b) in zip(expected.prefix(t.mac.count), t.mac) { diff |= a ^ b }
        guard diff == 0 else { return "its MAC does not match (wrong secret, or the response was altered)" }
        let skew = now > t.timeSigned ? now - t.timeSigned : t.timeSigned - now
        guard skew <= UInt64(t.fudge) else {
            return "it was signed \(skew) s away from this machine's clock (more than the \(t.fudge) s allowed): check both clocks"
        }
        return nil
    }
}
