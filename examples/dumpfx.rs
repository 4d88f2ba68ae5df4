use prost::Message;
use std::io::Read;
fn recs(b: &[u8]) -> Vec<Vec<u8>> {
    let mut v = vec![];
    let mut o = 0;
    while o + 4 <= b.len() {
        let l = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
        o += 4;
        v.push(b[o..o + l].to_vec());
        o += l;
    }
    v
}
fn main() {
    for a in std::env::args().skip(1) {
        let b = std::fs::read(&a).unwrap();
        let bodies: Vec<Vec<u8>> = if a.ends_with(".zip") {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(b)).unwrap();
            let mut out = vec![];
            for i in 0..z.len() {
                let mut f = z.by_index(i).unwrap();
                eprintln!(
                    "member {} {:?} size {}",
                    f.name().unwrap(),
                    f.compression(),
                    f.size()
                );
                let mut d = vec![];
                f.read_to_end(&mut d).unwrap();
                out.extend(recs(&d));
            }
            out
        } else if a.ends_with("bundleone") {
            recs(&b)
        } else {
            vec![b]
        };
        for body in bodies {
            let m = cbtrail::proto::CbEventMsg::decode(&body[..]).unwrap();
            println!("== {a}\n{:#?}", m);
        }
    }
}
