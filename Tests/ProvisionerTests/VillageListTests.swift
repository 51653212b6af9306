import Foundation
import Testing
@testable import Provisioner

@Suite("Reading the Kemendagri village list")
struct VillageListTests {
    let header = "code,name,district_code,district_name,regency_code,regency_name,province_code,province_name,kind\n"

    func parse(_ body: String) throws -> VillageList.Result {
        try VillageList.parse(header + body, regency: "32.04")
    }

    @Test("both official lists read without a rejection")
    func officialLists() throws {
        let b = try VillageList.read(path: Support.bandung, regency: "32.04")
        #expect(b.villages.count == 280 && b.rejections.isEmpty)
        #expect(b.villages.filter { $0.kind == .kelurahan }.count == 10)
        let p = try VillageList.read(path: Support.purbalingga, regency: "33.03")
        #expect(p.villages.count == 239 && p.rejections.isEmpty)
    }

    @Test("quoted fields keep their commas and quotes")
    func quoting() throws {
        let r = try parse("""
        32.04.05.2001,"Lubuk Pakam I,II",32.04.05,Cileunyi,32.04,Kabupaten Bandung,32,Jawa Barat,desa
        32.04.05.2002,"Way 'U'",32.04.05,"Cileunyi",32.04,Kabupaten Bandung,32,Jawa Barat,desa\r
        """)
        #expect(r.rejections.isEmpty)
        #expect(r.villages.map(\.name) == ["Lubuk Pakam I,II", "Way 'U'"])
    }

    @Test("broken rows are rejected, each naming its line and its problem", arguments: [
        ("33.03.01.2001,Kedungbenda,33.03.01,Kemangkon,33.03,Kab,33,Jateng,desa", "belongs to regency 33.03"),
        ("32.04.05.201,Cimekar,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa", "malformed village code"),
        ("32.04.05.2001,,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa", "name is empty"),
        ("32.04.05.2001,Cimekar,32.04.05,Cileunyi", "has 4 fields, the header has 9"),
        ("32.04.05.2001,\"Cimekar,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa", "unterminated quoted field"),
        ("32.04.05.2001,Cim\"ekar,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa", "stray quote"),
        ("32.04.05.2001,Cimekar,32.04.05,Cileunyi,32.04,Kab,32,Jabar,kelurahan", "listed as kelurahan, but its code says desa"),
        ("32.04.05.2001,Cimekar,32.04.06,Cileunyi,32.04,Kab,32,Jabar,desa", "district_code"),
        ("32.04.05.2001,x; rm -rf /,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa", "contains the character"),
        ("32.04.05.2001,Cimekar,32.04.05,,32.04,Kab,32,Jabar,desa", "kecamatan name is empty"),
    ])
    func brokenRows(row: String, reason: String) throws {
        let r = try parse("32.04.05.2002,Cileunyi Wetan,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa\n" + row + "\n")
        #expect(r.villages.map(\.code.value) == ["32.04.05.2002"])
        #expect(r.rejections.count == 1)
        #expect(r.rejections.first?.line == 3)
        #expect(r.rejections.first?.reason.contains(reason) == true, "got: \(r.rejections.first?.reason ?? "none")")
    }

    @Test("a duplicate code is rejected and names the first line")
    func duplicates() throws {
        let row = "32.04.05.2001,Cileunyi Kulon,32.04.05,Cileunyi,32.04,Kab,32,Jabar,desa\n"
        let r = try parse(row + row)
        #expect(r.villages.count == 1)
        #expect(r.rejections.first?.reason == "duplicate code 32.04.05.2001: already on line 2")
    }

    @Test("a file without the required columns is refused outright")
    func badHeader() {
        #expect(throws: DesaError.self) { try VillageList.parse("kode,nama\n1,2\n", regency: "32.04") }
        #expect(throws: DesaError.self) { try VillageList.parse("", regency: "32.04") }
        let dup = #expect(throws: DesaError.self) { try VillageList.parse("code,name,Name,district_name\n", regency: "32.04", source: "v.csv") }
        #expect(dup?.message == "v.csv line 1, column 3: duplicate column \"name\" (already column 2); each column may appear once")
    }
}

@Suite("JSON output")
struct JSONTests {
    @Test("strings are escaped and key order is kept")
    func escaping() {
        let j = JSON.object([("b", .string("a\"b\\c\nd\u{1}")), ("a", .int(1)), ("n", .null), ("l", .array([.bool(true)]))])
        #expect(j.serialized() == #"{"b":"a\"b\\c\nd\u0001","a":1,"n":null,"l":[true]}"#)
        let data = Data(j.serialized(pretty: true).utf8)
        #expect((try? JSONSerialization.jsonObject(with: data)) != nil)
    }
}

@Suite("State database")
struct StateStoreTests {
    @Test("timestamps are stored as RFC 3339 text and survive an update")
    func timestamps() throws {
        let dir = NSTemporaryDirectory() + "desa-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try StateStore(path: dir + "/state.sqlite")
        let v = try Village.validated(code: "32.04.05.2001", name: "Cileunyi Kulon", district: "Cileunyi", regency: "32.04")
        let created = Date(timeIntervalSince1970: 1_795_000_000)
        try store.queue.write { db in
            try Tenant(village: v, slug: "cileunyi-kulon", template: "default", php: "8.2", uid: 310_000, now: created).insert(db)
            var t = try StateStore.find(db, "cileunyi-kulon")
            t.status = .active
            try t.update(db)
        }
        let raw = try store.queue.read { db in try String.fetchOne(db, sql: "SELECT createdAt FROM tenant") }
        #expect(raw == "2026-11-18T11:06:40Z")
        #expect(try store.tenants().first?.createdAt == created)
        #expect(Timestamp.parse("2026-11-18 11:06:40") == nil)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/state.sqlite")[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}
