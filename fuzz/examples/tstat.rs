//! Time a target on inputs: `cargo run --release -p tci64-fuzz --example tstat -- TARGET FILE...`
fn main() {
    let mut a = std::env::args().skip(1);
    let t = a.next().unwrap();
    let f = tci64_fuzz::TARGETS.iter().find(|x| x.0 == t).unwrap().1;
    for p in a {
        let d = std::fs::read(&p).unwrap();
        let s = std::time::Instant::now();
        f(&d);
        eprintln!("{p}: {:?}", s.elapsed());
    }
}
