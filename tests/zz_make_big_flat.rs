mod common;
#[test]
#[ignore]
fn make_big_flat() {
    let dir = std::path::Path::new("/tmp/bigflat");
    std::fs::create_dir_all(dir).unwrap();
    let n: usize = std::env::var("N").unwrap().parse().unwrap();
    let f = common::dialects::skillforge_flat_2_sized(dir, n, 10);
    println!("{}", f.arg());
}
