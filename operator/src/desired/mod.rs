//! The pure part of the operator: "this resource wants these objects". The controllers
//! apply what these functions return; tests call them directly.

pub mod microservice;
pub mod redis;
pub mod shop;
