//! Fixed-size blocks of records for the correlation state's many short lists
//! (the spans of each trace, its log records until their window is evaluated).
//!
//! A list grows a block at a time: no reallocation and no copy as a trace
//! grows, and a freed list's blocks go whole onto a free chain for the next
//! trace, so the state allocates only while the number of records it holds
//! grows. Blocks live in pages allocated once at their full size and never
//! moved. Records stay in push order; [`Pool::retain`] compacts in place.

/// The end of a block chain.
const NIL: u32 = u32::MAX;

/// Blocks per page of a [`Pool`]: a page is allocated once, at its full size,
/// and never moved, so growing a pool copies nothing.
const PAGE_BITS: u32 = 6;
const PAGE: usize = 1 << PAGE_BITS;

/// `N` records and the index of the next block of their list.
struct Block<T, const N: usize> {
    items: [T; N],
    next: u32,
}

/// A list of records held in the blocks of a [`Pool`]: every block is full
/// but the last, which holds the rest (`len % N`, or `N`).
#[derive(Clone, Copy)]
pub(super) struct List {
    head: u32,
    tail: u32,
    /// The number of records.
    pub(super) len: u32,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// Blocks of `N` records, in pages, with a free chain.
pub(super) struct Pool<T, const N: usize> {
    pages: Vec<Vec<Block<T, N>>>,
    /// The first free block; free blocks are chained by `next`.
    free: u32,
}

impl<T, const N: usize> Default for Pool<T, N> {
    fn default() -> Self {
        Pool {
            pages: Vec::new(),
            free: NIL,
        }
    }
}

impl<T: Copy, const N: usize> Pool<T, N> {
    fn block(&self, i: u32) -> &Block<T, N> {
        &self.pages[(i >> PAGE_BITS) as usize][i as usize & (PAGE - 1)]
    }

    fn block_mut(&mut self, i: u32) -> &mut Block<T, N> {
        &mut self.pages[(i >> PAGE_BITS) as usize][i as usize & (PAGE - 1)]
    }

    /// A block whose first record is `first`, from the free chain if it has one.
    fn alloc(&mut self, first: T) -> u32 {
        if self.free != NIL {
            let i = self.free;
            let b = self.block_mut(i);
            let next = b.next;
            b.items[0] = first;
            b.next = NIL;
            self.free = next;
            return i;
        }
        if self.pages.last().is_none_or(|p| p.len() == PAGE) {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        let page = self.pages.len() - 1;
        let blocks = &mut self.pages[page];
        blocks.push(Block {
            items: [first; N],
            next: NIL,
        });
        // A worker holds far fewer than 2^32 blocks (each is hundreds of bytes).
        ((page << PAGE_BITS) + blocks.len() - 1) as u32
    }

    /// Appends `item` to `list`.
    pub(super) fn push(&mut self, list: &mut List, item: T) {
        let at = list.len as usize % N;
        if at == 0 {
            let b = self.alloc(item);
            if list.tail == NIL {
                list.head = b;
            } else {
                self.block_mut(list.tail).next = b;
            }
            list.tail = b;
        } else {
            self.block_mut(list.tail).items[at] = item;
        }
        list.len += 1;
    }

    /// The records of `list`, in the order they were pushed.
    pub(super) fn iter<'p>(&'p self, list: &List) -> impl Iterator<Item = &'p T> + use<'p, T, N> {
        let (mut block, mut left) = (list.head, list.len as usize);
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let b = self.block(block);
            let n = left.min(N);
            left -= n;
            block = b.next;
            Some(&b.items[..n])
        })
        .flatten()
    }

    /// Empties `list`, its blocks onto the free chain (one write, however long).
    pub(super) fn clear(&mut self, list: &mut List) {
        if list.head != NIL {
            let free = self.free;
            self.block_mut(list.tail).next = free;
            self.free = list.head;
        }
        *list = List::default();
    }

    /// Keeps the records of `list` for which `keep` holds, in order, and frees
    /// the blocks left empty.
    pub(super) fn retain(&mut self, list: &mut List, mut keep: impl FnMut(&T) -> bool) {
        let (mut read, mut write) = (list.head, list.head);
        let (mut read_at, mut write_at, mut kept) = (0, 0, 0u32);
        for _ in 0..list.len {
            if read_at == N {
                read = self.block(read).next;
                read_at = 0;
            }
            let item = self.block(read).items[read_at];
            read_at += 1;
            if !keep(&item) {
                continue;
            }
            if write_at == N {
                write = self.block(write).next;
                write_at = 0;
            }
            self.block_mut(write).items[write_at] = item;
            write_at += 1;
            kept += 1;
        }
        if kept == 0 {
            self.clear(list);
            return;
        }
        let rest = std::mem::replace(&mut self.block_mut(write).next, NIL);
        if rest != NIL {
            let free = self.free;
            self.block_mut(list.tail).next = free;
            self.free = rest;
        }
        list.tail = write;
        list.len = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_match_vectors_through_pushes_retains_and_clears() {
        let mut next = crate::xorshift(11);
        let mut pool: Pool<u64, 4> = Pool::default();
        let mut lists = vec![List::default(); 40];
        let mut model: Vec<Vec<u64>> = vec![Vec::new(); 40];
        for step in 0..20_000u64 {
            let i = (next() % 40) as usize;
            match next() % 10 {
                0 => {
                    pool.clear(&mut lists[i]);
                    model[i].clear();
                }
                1 => {
                    let m = 1 + next() % 4;
                    pool.retain(&mut lists[i], |x| x % m != 0);
                    model[i].retain(|x| x % m != 0);
                }
                _ => {
                    pool.push(&mut lists[i], step);
                    model[i].push(step);
                }
            }
            let got: Vec<u64> = pool.iter(&lists[i]).copied().collect();
            assert_eq!(got, model[i], "step {step}");
            assert_eq!(lists[i].len as usize, model[i].len());
        }
        for (l, m) in lists.iter().zip(&model) {
            assert_eq!(pool.iter(l).copied().collect::<Vec<_>>(), *m);
        }
        // Freed blocks are reused: the pool holds no more blocks than the
        // lists ever needed at once.
        let held: usize = pool.pages.iter().map(Vec::len).sum();
        let needed: usize = model.iter().map(|m| m.len().div_ceil(4)).sum();
        assert!(held >= needed);
        for l in &mut lists {
            pool.clear(l);
        }
        for _ in 0..held {
            let mut l = List::default();
            pool.push(&mut l, 1);
        }
        assert_eq!(pool.pages.iter().map(Vec::len).sum::<usize>(), held);
    }
}
