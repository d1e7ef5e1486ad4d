//! Model families, each written on candle ops with every op differentiable.

pub mod bert;
