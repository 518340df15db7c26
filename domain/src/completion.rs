//! When a send is finished: a city is done once its paging finished and every page it published
//! was delivered, and a notification is sent once every city is done. The ledger applies these
//! inside the transaction that records a page or a paging step (whichever comes last settles it),
//! so every SQL adapter decides the same way and only stores and fetches.

/// One city's send as the ledger holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CityState {
    /// Paging reached the end of the city (the last page was published).
    pub finished: bool,
    /// Already settled.
    pub done: bool,
    pub pages_published: u32,
    pub pages_delivered: u32,
}

impl CityState {
    /// Whether the city becomes done now. Its `matched` then becomes the receivers its pages
    /// actually reached (what they added), so a receiver paged in two cities (it moved mid-send)
    /// is counted once.
    pub fn completes(&self) -> bool {
        self.finished && !self.done && self.pages_delivered >= self.pages_published
    }
}

/// Whether a sending notification becomes sent, given how many of its cities are not done.
pub fn send_completes(open_cities: u64) -> bool {
    open_cities == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city(finished: bool, done: bool, published: u32, delivered: u32) -> CityState {
        CityState { finished, done, pages_published: published, pages_delivered: delivered }
    }

    #[test]
    fn a_city_completes_once_paged_to_the_end_and_every_page_delivered() {
        assert!(city(true, false, 3, 3).completes());
        assert!(!city(true, false, 3, 2).completes(), "a page is still on its way");
        assert!(!city(false, false, 3, 3).completes(), "paging goes on");
        assert!(!city(true, true, 3, 3).completes(), "settled before");
        assert!(city(true, false, 0, 0).completes(), "a city with nobody left to page");
        assert!(send_completes(0) && !send_completes(1));
    }
}
