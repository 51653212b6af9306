/// Numbers from RFC 1035, 2136 and 8945 that desa uses.
enum DNSConst {
    static let typeA: UInt16 = 1, typeNS: UInt16 = 2, typeSOA: UInt16 = 6, typeTXT: UInt16 = 16
    static let typeOPT: UInt16 = 41, typeTSIG: UInt16 = 250
    static let classIN: UInt16 = 1, classNONE: UInt16 = 254, classANY: UInt16 = 255
    static let opcodeQuery: UInt16 = 0, opcodeUpdate: UInt16 = 5
}

/// Builds a message in wire form. Names are written uncompressed.
struct DNSWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xffff)) }
    mutating func u48(_ v: UInt64) { u16(UInt16((v >> 32) & 0xffff)); u32(UInt32(v & 0xffff_ffff)) }
    mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    /// A canonical (validated) name.
    mutating func name(_ n: String) { append(DNSName.wire(n)) }

    mutating func header(id: UInt16, flags: UInt16, qd: UInt16, an: UInt16, ns: UInt16, ar: UInt16) {
        u16(id); u16(flags); u16(qd); u16(an); u16(ns); u16(ar)
    }

    /// A resource record with the given RDATA.
    mutating func record(name n: String, type: UInt16, cls: UInt16, ttl: UInt32, rdata: [UInt8]) {
        name(n); u16(type); u16(cls); u32(ttl); u16(UInt16(rdata.count)); append(rdata)
    }
}

/// Why a received message could not be read. Offsets are into the message.
struct DNSWireError: Error, CustomStringConvertible {
    let description: String
    static func truncated(_ what: String, at offset: Int) -> DNSWireError {
        DNSWireError(description: "the message ends inside \(what) at byte \(offset) (truncated)")
    }
}

struct DNSQuestion: Equatable {
    var name: String, type: UInt16, cls: UInt16
}

struct DNSRecord {
    var name: String, type: UInt16, cls: UInt16, ttl: UInt32
    /// Where the RDATA lies in the message.
    var rdata: Range<Int>
    /// Where the record starts in the message.
    var start: Int
}

/// A received message, parsed with bounds checks everywhere: hostile input gives a
/// `DNSWireError`, never a crash or an endless loop.
struct DNSMessage {
    let bytes: [UInt8]
    let id: UInt16
    let flags: UInt16
    var isResponse: Bool { flags & 0x8000 != 0 }
    var opcode: UInt16 { (flags >> 11) & 0xf }
    var authoritative: Bool { flags & 0x0400 != 0 }
    var truncated: Bool { flags & 0x0200 != 0 }
    var rcode: UInt16 { flags & 0xf }
    var questions: [DNSQuestion] = []
    var answers: [DNSRecord] = []
    var authority: [DNSRecord] = []
    var additional: [DNSRecord] = []

    /// The ID, QR and opcode of a packet too short or too broken to parse, if it has a header.
    static func peekID(_ bytes: [UInt8]) -> UInt16? {
        bytes.count >= 12 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    }

    init(parsing bytes: [UInt8]) throws(DNSWireError) {
        self.bytes = bytes
        var r = DNSReader(bytes: bytes)
        id = try r.u16("the header")
        flags = try r.u16("the header")
        let qd = try r.u16("the header"), an = try r.u16("the header")
        let ns = try r.u16("the header"), ar = try r.u16("the header")
        for _ in 0..<qd {
            let name = try r.name()
            questions.append(DNSQuestion(name: name, type: try r.u16("a question"), cls: try r.u16("a question")))
        }
        for _ in 0..<an { answers.append(try r.record()) }
        for _ in 0..<ns { authority.append(try r.record()) }
        for _ in 0..<ar { additional.append(try r.record()) }
        if r.pos != bytes.count {
            throw DNSWireError(description: "\(bytes.count - r.pos) bytes follow the last record")
        }
    }

    /// The character-strings of a TXT record, joined (RFC 8555 values are one string).
    func txt(_ record: DNSRecord) throws(DNSWireError) -> String {
        var pos = record.rdata.lowerBound
        var out: [UInt8] = []
        while pos < record.rdata.upperBound {
            let len = Int(bytes[pos])
            guard pos + 1 + len <= record.rdata.upperBound else {
                throw DNSWireError(description: "a TXT string of \(len) bytes runs past the end of its record at byte \(pos)")
            }
            out.append(contentsOf: bytes[(pos + 1)..<(pos + 1 + len)])
            pos += 1 + len
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A reader positioned at the start of a record's RDATA, limited to it.
    func rdataReader(_ record: DNSRecord) -> DNSReader {
        DNSReader(bytes: bytes, pos: record.rdata.lowerBound, end: record.rdata.upperBound)
    }
}

/// Reads integers and names with bounds checks; names follow compression pointers only
/// backwards, each one before the last, so a pointer loop cannot form.
struct DNSReader {
    let bytes: [UInt8]
    var pos = 0
    /// Reads stop here (the end of an RDATA); pointers may still reach the whole message.
    var end: Int

    init(bytes: [UInt8], pos: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.pos = pos
        self.end = end ?? bytes.count
    }

    mutating func u8(_ what: String) throws(DNSWireError) -> UInt8 {
        guard pos + 1 <= end else { throw .truncated(what, at: pos) }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u16(_ what: String) throws(DNSWireError) -> UInt16 {
        guard pos + 2 <= end else { throw .truncated(what, at: pos) }
        defer { pos += 2 }
        return UInt16(bytes[pos]) << 8 | UInt16(bytes[pos + 1])
    }

    mutating func u32(_ what: String) throws(DNSWireError) -> UInt32 {
        let hi = try u16(what), lo = try u16(what)
        return UInt32(hi) << 16 | UInt32(lo)
    }

    mutating func u48(_ what: String) throws(DNSWireError) -> UInt64 {
        let hi = try u16(what), lo = try u32(what)
        return UInt64(hi) << 32 | UInt64(lo)
    }

    mutating func take(_ count: Int, _ what: String) throws(DNSWireError) -> [UInt8] {
        guard count >= 0, pos + count <= end else { throw .truncated(what, at: pos) }
        defer { pos += count }
        return Array(bytes[pos..<(pos + count)])
    }

    /// A name, lower-cased, without the trailing dot ("" for the root). Bytes that are not
    /// letters, digits, `-` or `_` are shown as `\DDD`, so they never equal a name we sent.
    mutating func name() throws(DNSWireError) -> String {
        var labels: [String] = []
        var at = pos
        var resume: Int?          // where reading goes on after the first pointer
        var floor = pos           // every pointer must point before this
        var wireLength = 0
        var jumps = 0
        while true {
            // Labels read after a pointer may reach anywhere in the message, not only `end`.
            let limit = resume == nil ? end : bytes.count
            guard at < limit else { throw .truncated("a name", at: at) }
            let len = Int(bytes[at])
            switch len & 0xc0 {
            case 0x00:
                if len == 0 {
                    pos = resume ?? (at + 1)
                    return labels.joined(separator: ".")
                }
                guard at + 1 + len <= limit else { throw .truncated("a name", at: at) }
                wireLength += len + 1
                guard wireLength < 255 else {
                    throw DNSWireError(description: "a name at byte \(pos) is longer than 255 bytes")
                }
                labels.append(Self.show(bytes[(at + 1)..<(at + 1 + len)]))
                at += 1 + len
            case 0xc0:
                guard at + 2 <= limit else { throw .truncated("a compression pointer", at: at) }
                let target = (len & 0x3f) << 8 | Int(bytes[at + 1])
                jumps += 1
                guard target < floor, jumps <= 127 else {
                    throw DNSWireError(description: "a compression pointer at byte \(at) points to byte \(target), not before the name it continues (a pointer loop)")
                }
                if resume == nil { resume = at + 2 }
                floor = target
                at = target
            default:
                throw DNSWireError(description: "a name at byte \(at) uses an unknown label type 0x\(String(len, radix: 16))")
            }
        }
    }

    mutating func record() throws(DNSWireError) -> DNSRecord {
        let start = pos
        let name = try name()
        let type = try u16("a record"), cls = try u16("a record"), ttl = try u32("a record")
        let length = Int(try u16("a record"))
        guard pos + length <= end else { throw .truncated("the data of a record", at: pos) }
        defer { pos += length }
        return DNSRecord(name: name, type: type, cls: cls, ttl: ttl, rdata: pos..<(pos + length), start: start)
    }

    private static func show(_ label: ArraySlice<UInt8>) -> String {
        var out = ""
        for b in label {
            let c = DNSName.lower(b)
            if (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 45 || c == 95 {
                out.unicodeScalars.append(Unicode.Scalar(c))
            } else {
                out += "\\" + String(1000 + Int(b)).dropFirst()
            }
        }
        return out
    }
}
